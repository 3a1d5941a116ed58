"""
Wiring of push notifications for the embedded profile.
"""

from __future__ import annotations

from commands.service import ChatService
from infra.push import PushRegistry
from infra.push.dispatcher import WEB_PUSH_TARGET, PushDispatcher, RetryPolicy, Sender
from infra.push.notifier import PushNotifier
from infra.push.store import SQLitePushStore
from infra.push.webhook import WEBHOOK_TARGET, WebhookSender
from infra.push.webpush import VAPID_FILE, VapidKeys, WebPushSender
from infra.settings import Settings
from projections.notifications import PushDecider, PushPolicy
from projections.ports import HistoryQueries
from projections.presence import PresenceTracker


def policy_of(settings: Settings) -> PushPolicy:
    return PushPolicy(
        grace_seconds=settings.push_grace_seconds,
        collapse_seconds=settings.push_collapse_seconds,
        include_body=settings.push_include_body,
    )


class MissingVapidKeyError(ValueError):
    """
    The scaled profile was started without the VAPID key all processes share.
    """


def vapid_keys(settings: Settings) -> VapidKeys:
    """
    The configured VAPID key; the embedded profile may keep one in its data dir.
    """
    configured = settings.push_vapid_private_key
    if configured is not None:
        return VapidKeys.from_setting(configured.get_secret_value())
    if settings.profile == "scaled":
        msg = (
            "the scaled profile needs DUETTO_PUSH_VAPID_PRIVATE_KEY shared by "
            "every gateway and `duetto notify`"
        )
        raise MissingVapidKeyError(msg)
    return VapidKeys.load_or_create(settings.data_dir / VAPID_FILE)


def senders_of(settings: Settings, keys: VapidKeys) -> dict[str, Sender]:
    """
    The web push sender, and the webhook's when the operator configured one.
    """
    timeout = settings.push_timeout_seconds
    senders: dict[str, Sender] = {
        WEB_PUSH_TARGET: WebPushSender(
            keys, subject=settings.push_vapid_subject, timeout=timeout
        )
    }
    secret = settings.push_webhook_secret
    if settings.push_webhook_url is not None and secret is not None:
        senders[WEBHOOK_TARGET] = WebhookSender(
            settings.push_webhook_url, secret.get_secret_value(), timeout=timeout
        )
    return senders


def build_push(
    settings: Settings,
    chat: ChatService,
    history: HistoryQueries,
    presence: PresenceTracker,
) -> tuple[PushRegistry, PushNotifier]:
    """
    The push store, the routes' registry and the notifier thread (not started).
    """
    store = SQLitePushStore(settings.data_dir / "push.sqlite")
    keys = vapid_keys(settings)
    decider = PushDecider(
        store, history, lambda user: presence.status(user).online, policy_of(settings)
    )
    dispatcher = PushDispatcher(
        store,
        history,
        senders_of(settings, keys),
        webhook_url=settings.push_webhook_url,
        retry=RetryPolicy(settings.push_retry_base_seconds, settings.push_max_attempts),
    )
    notifier = PushNotifier(
        chat,
        store,
        decider,
        dispatcher,
        batch_size=settings.follower_batch_size,
        poll_seconds=settings.follower_poll_seconds,
    )
    registry = PushRegistry(store, keys.public_key, allow_http=settings.is_loopback)
    return registry, notifier
