"""Cloud Function triggers: declarations only, each a few lines.

`firebase deploy` and the emulator import this module to discover the
functions, so nothing here does I/O at import; clients are created lazily in
`effects`.
"""

from firebase_functions import pubsub_fn
from firebase_functions.core import CloudEvent

from control import lifecycle
from wa_wire import DEFAULT_TOPIC


@pubsub_fn.on_message_published(topic=DEFAULT_TOPIC, retry=True)
def on_lifecycle_event(event: CloudEvent[pubsub_fn.MessagePublishedData[object]]) -> None:
    """Record a lifecycle event on its account, once per event_id."""
    lifecycle.handle_message(event.data.message.data, event.data.message.message_id)
