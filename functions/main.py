"""Cloud Function triggers: declarations only, each a few lines.

`firebase deploy` and the emulator import this module to discover the
functions, so nothing here does I/O at import; clients are created lazily in
`effects` and params (control/params.py) are read when a function runs.
"""

from firebase_functions import firestore_fn, pubsub_fn, scheduler_fn
from firebase_functions.core import CloudEvent

from control import lifecycle, requests
from control import sweep as sweeping
from wa_wire import DEFAULT_TOPIC, Collections


@pubsub_fn.on_message_published(topic=DEFAULT_TOPIC, retry=True)
def on_lifecycle_event(event: CloudEvent[pubsub_fn.MessagePublishedData[object]]) -> None:
    """Apply the policy to a lifecycle event, once per event_id."""
    lifecycle.handle_message(event.data.message.data, event.data.message.message_id)


# firebase-functions 0.6.0 types the event as Event[DocumentSnapshot | None]; the handler re-reads the
# request in a transaction (skipping answered ones), so it needs only the id.
@firestore_fn.on_document_created(document=f"{Collections.REQUESTS.value}/{{requestId}}")  # type: ignore[arg-type]
def on_request_created(event: firestore_fn.Event[object]) -> None:
    """Turn an app request into a command, or reject it with an error."""
    requests.handle_created(event.params["requestId"])


@scheduler_fn.on_schedule(schedule="every 5 minutes")
def sweep(event: scheduler_fn.ScheduledEvent) -> None:
    """Expire stale commands, tick accounts, mark unattended ones, prune old data."""
    sweeping.handle_schedule()
