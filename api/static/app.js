"use strict";
// duetto's web client: one WebSocket, a conversation list, and one open chat.
// Every body and name goes into the page through textContent, never as HTML.

const $ = (id) => document.getElementById(id);

const state = {
  me: null,
  token: null,
  socket: null,
  retryDelay: 500,
  peer: null,
  conversations: new Map(), // conversation_id -> summary, as GET /conversations
  messages: new Map(), // conversation_id -> Map(seq -> message)
  pending: new Map(), // client_msg_id -> {to, body, failed}: sent, not yet acked
  presence: new Map(), // user -> {online, last_seen}
  asked: new Map(), // conversation_id -> marks requested on the current socket
};

// HTTP

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(path, { ...options, headers });
  const data = await response.json().catch(() => ({}));
  if (response.status === 401) signOut("Your session ended; sign in again.");
  if (!response.ok) {
    const error = new Error(data.error?.message ?? `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

async function signIn(user) {
  const { token } = await api("/v1/dev/token", {
    method: "POST",
    body: JSON.stringify({ user }),
  });
  sessionStorage.setItem("duetto", JSON.stringify({ user, token }));
  start(user, token);
}

async function start(user, token) {
  Object.assign(state, { me: user, token });
  $("me").textContent = user;
  $("sign-in").hidden = true;
  $("chat").hidden = false;
  $("sign-out").hidden = false;
  await refreshConversations();
  connect();
  offerNotifications().catch((error) => toast(error.message));
}

function signOut(reason) {
  const socket = state.socket;
  state.socket = null; // so that its close does not schedule a reconnect
  socket?.close();
  sessionStorage.removeItem("duetto");
  if (reason) sessionStorage.setItem("duetto-note", reason);
  location.reload();
}

async function refreshConversations() {
  const { conversations } = await api("/v1/conversations");
  conversations.forEach(merge);
  renderConversations();
}

function merge(fresh) {
  const known = state.conversations.get(fresh.conversation_id);
  state.conversations.set(fresh.conversation_id, fresh);
  if (!known) return;
  // The list may trail what the socket already told us: keep the newer facts.
  if (known.last_seq > fresh.last_seq) {
    const { last_seq, last_message, unread } = known;
    Object.assign(fresh, { last_seq, last_message, unread });
  }
  noteReceipt(known.mine);
  noteReceipt(known.theirs);
}

async function loadHistory(conversationId) {
  const url = `/v1/conversations/${conversationId}/messages?limit=50`;
  const { messages } = await api(url);
  messages.forEach(store);
}

async function fetchPresence(user) {
  try {
    const presence = await api(`/v1/presence/${encodeURIComponent(user)}`);
    state.presence.set(user, presence);
  } catch (error) {
    // A 404 only means there is no conversation with them yet.
    if (error.status !== 404) toast(error.message);
  }
  renderPresence();
}

// Push notifications: a service worker shows them while no tab is connected.

function pushSupported() {
  return "serviceWorker" in navigator && "PushManager" in window;
}

async function offerNotifications() {
  if (!pushSupported() || Notification.permission === "denied") return;
  if (Notification.permission === "granted") return subscribePush();
  // Browsers only ask for permission in answer to a click.
  const button = element("button", "", "Notify me");
  button.type = "button";
  button.id = "notify";
  button.addEventListener("click", async () => {
    if ((await Notification.requestPermission()) !== "granted") return;
    button.remove();
    await subscribePush().catch((error) => toast(error.message));
  });
  $("sign-out").before(button);
}

async function subscribePush() {
  const registration = await navigator.serviceWorker.register("/sw.js");
  await navigator.serviceWorker.ready;
  const { public_key } = await api("/v1/push/vapid-public-key");
  const subscription =
    (await registration.pushManager.getSubscription()) ??
    (await registration.pushManager.subscribe({
      userVisibleOnly: true,
      applicationServerKey: base64UrlBytes(public_key),
    }));
  await api("/v1/push/subscriptions", {
    method: "POST",
    body: JSON.stringify(subscription.toJSON()),
  });
}

function base64UrlBytes(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const raw = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

// WebSocket

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const token = encodeURIComponent(state.token);
  const socket = new WebSocket(`${scheme}//${location.host}/v1/ws?token=${token}`);
  let opened = false;
  state.socket = socket;
  socket.onopen = () => {
    opened = true;
    state.retryDelay = 500;
    state.asked.clear();
    setLink(true);
    send({ type: "sync", cursors: cursors() });
  };
  socket.onmessage = (event) => handle(JSON.parse(event.data));
  socket.onclose = (event) => {
    if (state.socket !== socket) return;
    state.socket = null;
    setLink(false);
    state.presence.clear(); // stale until the next socket reports again
    renderPresence();
    if (event.code === 1008) return signOut("Your session ended; sign in again.");
    // A refused handshake looks like any failed one; HTTP tells a bad token
    // (a 401 signs out) from a server that is down.
    if (!opened) refreshConversations().catch(() => {});
    // Back off exponentially, with jitter, so restarts are not stampedes.
    const delay = state.retryDelay * (0.75 + Math.random() / 2);
    state.retryDelay = Math.min(state.retryDelay * 2, 15000);
    setTimeout(connect, delay);
  };
}

function send(frame) {
  if (state.socket?.readyState !== WebSocket.OPEN) return false;
  state.socket.send(JSON.stringify(frame));
  return true;
}

// The highest seq we know of per conversation: sync sends only what is newer.
function cursors() {
  const result = {};
  for (const [id, summary] of state.conversations) result[id] = summary.last_seq;
  return result;
}

const HANDLERS = {
  ack(frame) {
    const sent = state.pending.get(frame.client_msg_id);
    if (sent) store({ ...frame, sender: state.me, body: sent.body });
  },
  message(frame) {
    store(frame);
    acknowledge(frame.conversation_id);
    // A first message makes the peer's presence visible to us: ask for it now.
    const peer = state.conversations.get(frame.conversation_id).peer;
    if (peer === state.peer && !state.presence.has(peer)) fetchPresence(peer);
  },
  sync_page(frame) {
    frame.messages.forEach(store);
    (frame.receipts ?? []).forEach(noteReceipt);
    acknowledge(frame.conversation_id);
  },
  synced() {
    // Anything the last socket lost is sent again: the same client_msg_id
    // makes the server return the original message instead of a second one.
    for (const [id, sent] of state.pending) if (!sent.failed) transmit(id, sent);
    if (state.peer) fetchPresence(state.peer);
    render();
  },
  receipt(frame) {
    noteReceipt(frame);
    render();
  },
  presence(frame) {
    state.presence.set(frame.user, frame);
    renderPresence();
  },
  error(frame) {
    const sent = state.pending.get(frame.ref);
    if (sent) {
      sent.failed = frame.message;
      renderMessages();
    }
    toast(`${frame.code}: ${frame.message}`);
  },
  pong() {},
};

function handle(frame) {
  const handler = HANDLERS[frame.type];
  if (handler) handler(frame);
}

// Read model

function store(message) {
  const id = message.conversation_id;
  const mine = message.sender === state.me;
  const sent = mine ? state.pending.get(message.client_msg_id) : null;
  if (sent) state.pending.delete(message.client_msg_id);
  let summary = state.conversations.get(id);
  if (!summary) {
    const peer = mine ? sent?.to : message.sender;
    // Our own message from another device: only the list knows the peer.
    if (!peer) refreshConversations().catch(() => {});
    summary = newSummary(id, peer);
    state.conversations.set(id, summary);
  }
  if (!state.messages.has(id)) state.messages.set(id, new Map());
  state.messages.get(id).set(message.seq, message);

  if (message.seq > summary.last_seq) {
    summary.last_seq = message.seq;
    // Cut by code points, as the server does, never inside a character.
    const preview = [...message.body].slice(0, 80).join("");
    summary.last_message = { ...message, preview };
    const unread = message.seq > summary.mine.read_up_to;
    if (!mine && unread) summary.unread += 1;
  }
  render();
}

function newSummary(id, peer) {
  const marks = (user) => ({
    conversation_id: id,
    user,
    delivered_up_to: 0,
    read_up_to: 0,
  });
  return {
    conversation_id: id,
    peer,
    last_seq: 0,
    last_message: null,
    unread: 0,
    mine: marks(state.me),
    theirs: marks(peer),
  };
}

function noteReceipt(receipt) {
  const summary = state.conversations.get(receipt.conversation_id);
  if (!summary) return;
  const side = receipt.user === state.me ? "mine" : "theirs";
  const marks = summary[side];
  // Marks only move forward; a late frame must not move a tick back.
  marks.delivered_up_to = Math.max(marks.delivered_up_to, receipt.delivered_up_to);
  marks.read_up_to = Math.max(marks.read_up_to, receipt.read_up_to);
  if (side === "mine" && marks.read_up_to >= summary.last_seq) summary.unread = 0;
}

// Tell the server what reached this device, and what is on screen.
function acknowledge(conversationId) {
  const summary = state.conversations.get(conversationId);
  if (!summary || !summary.last_seq) return;
  const asked = state.asked.get(conversationId) ?? { delivered: 0, read: 0 };
  state.asked.set(conversationId, asked);
  const upTo = summary.last_seq;
  const mark = (type, done) => {
    if (upTo <= Math.max(done, asked[type])) return;
    if (send({ type, conversation_id: conversationId, up_to_seq: upTo })) {
      asked[type] = upTo;
    }
  };
  mark("delivered", summary.mine.delivered_up_to);
  const visible = document.visibilityState === "visible";
  if (visible && summary.peer === state.peer) mark("read", summary.mine.read_up_to);
}

function conversationWith(peer) {
  for (const summary of state.conversations.values()) {
    if (summary.peer === peer) return summary;
  }
  return null;
}

// Actions

async function openPeer(peer) {
  state.peer = peer;
  $("peer-name").textContent = peer;
  $("body").disabled = false;
  $("composer").querySelector("button").disabled = false;
  render();
  $("body").focus();
  const summary = conversationWith(peer);
  await fetchPresence(peer);
  if (summary) {
    await loadHistory(summary.conversation_id);
    acknowledge(summary.conversation_id);
  }
}

function sendMessage(body) {
  const id = crypto.randomUUID();
  const sent = { to: state.peer, body, failed: null };
  state.pending.set(id, sent);
  transmit(id, sent);
  renderMessages();
}

function transmit(id, sent) {
  // The ref is the client_msg_id, so an error frame names the message it refuses.
  send({ type: "send", ref: id, client_msg_id: id, to: sent.to, body: sent.body });
}

// Rendering

function render() {
  renderConversations();
  renderMessages();
}

function renderConversations() {
  const list = $("conversations");
  const summaries = [...state.conversations.values()]
    .filter((summary) => summary.peer)
    .sort((a, b) => activity(b).localeCompare(activity(a)));
  list.replaceChildren(...summaries.map(conversationItem));
}

function activity(summary) {
  return summary.last_message?.sent_at ?? "";
}

function conversationItem(summary) {
  const item = element("li", "", "");
  item.dataset.peer = summary.peer;
  item.classList.toggle("active", summary.peer === state.peer);
  item.append(element("span", "peer", summary.peer));
  if (summary.unread > 0 && summary.peer !== state.peer) {
    item.append(element("span", "badge", String(summary.unread)));
  }
  const last = summary.last_message;
  const prefix = last?.sender === state.me ? "You: " : "";
  item.append(element("span", "preview", last ? prefix + last.preview : ""));
  item.addEventListener("click", () => {
    openPeer(summary.peer).catch((error) => toast(error.message));
  });
  return item;
}

function renderMessages() {
  const list = $("messages");
  const summary = state.peer && conversationWith(state.peer);
  const stored = summary ? state.messages.get(summary.conversation_id) : null;
  const messages = [...(stored?.values() ?? [])].sort((a, b) => a.seq - b.seq);
  const items = messages.map((message) => messageItem(message, summary));
  for (const [id, sent] of state.pending) {
    if (sent.to === state.peer) items.push(pendingItem(id, sent));
  }
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren(...items);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function messageItem(message, summary) {
  const mine = message.sender === state.me;
  let status = "";
  if (mine) {
    status = "sent";
    if (summary.theirs.delivered_up_to >= message.seq) status = "delivered";
    if (summary.theirs.read_up_to >= message.seq) status = "read";
  }
  return bubble(message.body, message.sent_at, mine, status, message.seq);
}

function pendingItem(id, sent) {
  const item = bubble(sent.body, null, true, sent.failed ? "failed" : "pending");
  item.dataset.clientMsgId = id;
  if (sent.failed) {
    item.classList.add("failed");
    item.title = `Not sent: ${sent.failed} (click to dismiss)`;
    item.addEventListener("click", () => {
      state.pending.delete(id);
      renderMessages();
    });
  }
  return item;
}

const TICKS = {
  pending: "…",
  sent: "✓",
  delivered: "✓✓",
  read: "✓✓",
  failed: "!",
};

function bubble(body, sentAt, mine, status, seq) {
  const item = element("li", mine ? "msg mine" : "msg", body);
  if (seq) item.dataset.seq = seq;
  const meta = element("span", "meta", sentAt ? clock(sentAt) : "");
  if (mine) {
    item.dataset.status = status;
    const ticks = element("span", `ticks ${status}`, TICKS[status]);
    ticks.title = status;
    meta.append(ticks);
  }
  item.append(meta);
  return item;
}

function renderPresence() {
  const presence = state.presence.get(state.peer);
  const dot = $("presence");
  dot.classList.toggle("online", Boolean(presence?.online));
  dot.dataset.online = String(Boolean(presence?.online));
  const seen = presence?.last_seen;
  if (!presence) dot.title = "unknown";
  else if (presence.online) dot.title = "online";
  else dot.title = seen ? `last seen ${clock(seen)}` : "offline";
}

function setLink(up) {
  $("link").textContent = up ? "online" : "reconnecting…";
  $("link").classList.toggle("up", up);
}

let toastTimer = null;
function toast(text) {
  $("toast").textContent = text;
  $("toast").hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => ($("toast").hidden = true), 4000);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.textContent = text;
  return node;
}

function clock(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// Wiring

$("sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("user").value.trim()).catch((error) => toast(error.message));
});

$("pick-peer").addEventListener("submit", (event) => {
  event.preventDefault();
  const peer = $("peer-input").value.trim();
  if (peer === state.me) return toast("Pick someone other than yourself.");
  $("peer-input").value = "";
  openPeer(peer).catch((error) => toast(error.message));
});

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const body = $("body").value;
  if (!body.trim()) return;
  $("body").value = "";
  sendMessage(body);
});

$("sign-out").addEventListener("click", () => signOut(null));

document.addEventListener("visibilitychange", () => {
  const summary = state.peer && conversationWith(state.peer);
  if (summary) acknowledge(summary.conversation_id);
});

// Leaving the page closes the socket, so presence does not wait for the
// back/forward cache to drop it; coming back reconnects and syncs.
window.addEventListener("pagehide", () => {
  const socket = state.socket;
  state.socket = null;
  socket?.close(1000);
});
window.addEventListener("pageshow", (event) => {
  if (event.persisted && state.token) connect();
});

// Keep idle sockets alive through proxies that drop quiet connections.
setInterval(() => send({ type: "ping" }), 25000);

const saved = JSON.parse(sessionStorage.getItem("duetto") ?? "null");
const note = sessionStorage.getItem("duetto-note");
sessionStorage.removeItem("duetto-note");
if (note) toast(note);
if (saved) start(saved.user, saved.token).catch((error) => toast(error.message));
