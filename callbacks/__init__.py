"""Lightning callbacks shipped with mathverify; they rely only on the step-output contract."""

from callbacks.metrics import VerificationMetrics
from callbacks.submission import SubmissionWriter

__all__ = ["SubmissionWriter", "VerificationMetrics"]
