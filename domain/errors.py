"""
Errors raised by the chat model, each with a machine-readable code.

ChatError                       code
 ├── InvalidUserIdError         invalid_user_id
 ├── SelfMessageError           cannot_message_self
 ├── ConversationNotFoundError  conversation_not_found
 ├── EmptyBodyError             empty_body
 ├── InvalidBodyError           invalid_body
 ├── BodyTooLargeError          body_too_large
 ├── InvalidClientMsgIdError    invalid_client_msg_id
 └── SeqOutOfRangeError         seq_out_of_range

A user who is not a participant gets ``ConversationNotFoundError``, never a
"forbidden": the conversation is not theirs to know about.
"""

from __future__ import annotations


class ChatError(Exception):
    """
    The root of every error a client can cause.
    """

    code = "chat_error"
    field: str | None = None

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if field is not None:
            self.field = field


class InvalidUserIdError(ChatError):
    code = "invalid_user_id"
    field = "to"


class SelfMessageError(ChatError):
    code = "cannot_message_self"
    field = "to"


class ConversationNotFoundError(ChatError):
    code = "conversation_not_found"
    field = "conversation_id"


class EmptyBodyError(ChatError):
    code = "empty_body"
    field = "body"


class InvalidBodyError(ChatError):
    code = "invalid_body"
    field = "body"


class BodyTooLargeError(ChatError):
    code = "body_too_large"
    field = "body"


class InvalidClientMsgIdError(ChatError):
    code = "invalid_client_msg_id"
    field = "client_msg_id"


class SeqOutOfRangeError(ChatError):
    code = "seq_out_of_range"
    field = "up_to_seq"
