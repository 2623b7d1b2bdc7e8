"""Billing's due work, run per tenant by the beat dispatcher or a test clock
(tenants.services.scheduling). Handlers take the job's payload and call one service.
Billing's tables are all public, so its jobs skip switching to the tenant's schema."""
from datetime import datetime

from tenants.services.scheduling import job_batch_handler, job_handler

from .services import collection, crypto, dunning, renewal, subscriptions


def _at(payload: dict, name: str) -> datetime:
    return datetime.fromisoformat(payload[name])


@job_handler(subscriptions.TRIAL_REMINDER_JOB, tenant_schema=False)
def _trial_reminder(job):
    subscriptions.trial_remind(tenant=job.tenant, trial_end=_at(job.payload, "trial_end"),
                               days=job.payload["days"])


@job_handler(subscriptions.TRIAL_END_JOB, tenant_schema=False)
def _trial_end(job):
    subscriptions.trial_end_process(tenant=job.tenant, trial_end=_at(job.payload, "trial_end"))


@job_handler(subscriptions.RENEWAL_JOB, tenant_schema=False)
def _renewal(job):
    renewal.subscription_renew(tenant=job.tenant, period_end=_at(job.payload, "period_end"))


@job_batch_handler(subscriptions.RENEWAL_JOB)
def _renewals(jobs):
    renewal.subscriptions_renew([(job.tenant, _at(job.payload, "period_end")) for job in jobs])


@job_handler(collection.CHARGE_JOB, tenant_schema=False)
def _charge(job):
    collection.invoice_collect(invoice_id=job.payload["invoice_id"], attempt=job.payload["attempt"])


@job_handler(dunning.GRACE_END_JOB, tenant_schema=False)
def _grace_end(job):
    dunning.grace_end(tenant=job.tenant, invoice_id=job.payload["invoice_id"])


@job_handler(dunning.SUSPENSION_END_JOB, tenant_schema=False)
def _suspension_end(job):
    dunning.suspension_end(tenant=job.tenant, suspended_at=_at(job.payload, "suspended_at"))


@job_handler(crypto.QUOTE_EXPIRE_JOB, tenant_schema=False)
def _crypto_quote_expire(job):
    # Looks at the chain first, so a payment sent in time is never taken for a late one;
    # an unreachable chain fails the job, which is tried again.
    crypto.quote_refresh(quote_id=job.payload["quote_id"])
