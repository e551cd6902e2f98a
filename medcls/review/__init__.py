"""The review round trip: the queue goes out to doctors (CSV, Label Studio), their labels come
back into the labelled pool, and the label audit adds training images that look mislabelled."""

from medcls.review.audit import AuditResult, audit_labels, audit_queue, find_label_errors
from medcls.review.guarantee_audit import AuditVerdict, audit_outcomes, check_audited_labels
from medcls.review.pool import ImportResult, ensure_pool, import_review_file
from medcls.review.queue import publish_review_queue, review_queue

__all__ = [
    "AuditResult",
    "AuditVerdict",
    "ImportResult",
    "audit_labels",
    "audit_outcomes",
    "audit_queue",
    "check_audited_labels",
    "ensure_pool",
    "find_label_errors",
    "import_review_file",
    "publish_review_queue",
    "review_queue",
]
