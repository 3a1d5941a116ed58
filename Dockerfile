FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain domain
COPY commands commands
COPY projections projections
COPY api api
COPY infra infra
RUN pip install --no-cache-dir ".[scaled]"
USER nobody
EXPOSE 8000
CMD ["duetto", "serve", "--host", "0.0.0.0"]
