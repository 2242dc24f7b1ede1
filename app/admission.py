"""Admission by expected wait: refuse at once what the model cannot answer before the request's deadline.

A queue bounded only by its length promises work it may not finish: when the model drains slower than
usual (a busy machine, large requests), 256 queued images can take longer than any deadline, and every
request accepted into that queue waits the full deadline and then gets 504. Instead the service measures
how fast the model is finishing images right now and, before it reads a body and again when the decoded
images join the queue, estimates when this request would be answered:

    wait = until a worker is free + (images ahead + this request's images) / capacity + one pass

where capacity is images per second over all model workers, from the recent passes (a moving average, so
a slower machine shows within a few passes), "until a worker is free" is the time left of the soonest
running pass when all workers are busy, and "images ahead" are the queued images (at the door, plus those
of the requests being decoded). A request whose wait does not fit in ``SAFETY`` of the time
it has left is answered 429 at once, with a ``Retry-After`` of the time the queue ahead of it needs to
drain. Until the first passes are measured (just after start-up) only the queue's length bounds admission.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Admit only what the estimate says finishes within this share of the time left: the margin absorbs a
# pass slower than the average (another process taking a core, a larger image) without a 504.
SAFETY = 0.5
# Weight of the newest pass in the moving averages: about the last 5-10 passes count.
SMOOTHING = 0.2
MAX_RETRY_AFTER_S = 60


@dataclass
class Capacity:
    """How fast the model finishes images now, from the passes it ran (moving averages)."""

    workers: int
    pass_seconds: float = 0.0  # a pass's duration
    pass_images: float = 0.0  # images in a pass
    request_images: float = 1.0  # images per request, for those not decoded yet

    @property
    def measured(self) -> bool:
        return self.pass_seconds > 0

    def record_pass(self, images: int, seconds: float) -> None:
        if not self.measured:
            self.pass_seconds, self.pass_images = seconds, float(images)
            return
        self.pass_seconds += SMOOTHING * (seconds - self.pass_seconds)
        self.pass_images += SMOOTHING * (images - self.pass_images)

    def record_request(self, images: int) -> None:
        self.request_images += SMOOTHING * (images - self.request_images)

    @property
    def images_per_s(self) -> float:
        """Images per second over all workers, at the batch sizes the load makes."""
        return self.workers * self.pass_images / self.pass_seconds

    def expected_wait(self, ahead: float, images: int, worker_free_in: float = 0.0) -> float:
        """Seconds until a request of ``images`` queued behind ``ahead`` images is answered (measured only).

        ``worker_free_in``: when every worker is busy, how long until the first is free again.
        """
        return worker_free_in + (ahead + images) / self.images_per_s + self.pass_seconds

    def retry_after(self, ahead: float) -> int:
        """Whole seconds for the images ahead to drain: when a retry can expect room (1 until measured)."""
        if not self.measured:
            return 1
        return max(1, min(MAX_RETRY_AFTER_S, math.ceil(ahead / self.images_per_s)))
