"""
Identifiers of users, messages and conversations.
"""

from __future__ import annotations

import re
from uuid import UUID, uuid5

from domain.errors import InvalidClientMsgIdError, InvalidUserIdError, SelfMessageError

UserId = str
"""A user id: 1-64 letters, digits, ``.``, ``_`` or ``-``."""

USER_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
CLIENT_MSG_ID_PATTERN = re.compile(r"[\x21-\x7e]{1,128}")

# Fixed forever: changing it would re-address every existing conversation.
CONVERSATION_NAMESPACE = UUID("6f1d3b0e-5c2a-4d8e-9a47-0b3c2e1f7a55")


def check_user_id(user_id: str, *, field: str = "to") -> UserId:
    """
    Return the user id unchanged, or raise if it is not well formed.
    """
    if not USER_ID_PATTERN.fullmatch(user_id):
        msg = "a user id is 1-64 letters, digits, '.', '_' or '-'"
        raise InvalidUserIdError(msg, field=field)
    return user_id


def check_client_msg_id(client_msg_id: str) -> str:
    """
    Return the client's message id unchanged, or raise if it is not usable.
    """
    if not CLIENT_MSG_ID_PATTERN.fullmatch(client_msg_id):
        msg = "client_msg_id is 1-128 printable ASCII characters without spaces"
        raise InvalidClientMsgIdError(msg)
    return client_msg_id


def ordered_pair(first: UserId, second: UserId) -> tuple[UserId, UserId]:
    """
    Return the two participants in their canonical order.
    """
    check_user_id(first)
    check_user_id(second)
    if first == second:
        raise SelfMessageError("a user cannot message themself")
    return (first, second) if first < second else (second, first)


def conversation_id(first: UserId, second: UserId) -> UUID:
    """
    Derive the conversation's id from its two participants, in either order.
    """
    user_a, user_b = ordered_pair(first, second)
    # NUL cannot occur in a user id, so distinct pairs never share a name.
    return uuid5(CONVERSATION_NAMESPACE, f"{user_a}\x00{user_b}")
