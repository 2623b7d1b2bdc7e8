"""Organisations, their domains, people and their roles, API keys, the audit log, test
clocks and scheduled work. Workflows live in tenants/services/."""
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Lower
from django_tenants.models import DomainMixin, TenantMixin

from aerolith import clock


class Region(models.TextChoices):
    US_EAST = "us-east", "US East"
    US_WEST = "us-west", "US West"
    EU_CENTRAL = "eu-central", "EU Central"
    AP_SOUTHEAST = "ap-southeast", "Asia Pacific (Southeast)"


class TenantStatus(models.TextChoices):
    TRIALING = "trialing", "Trialing"
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Past due"
    SUSPENDED = "suspended", "Suspended"
    CANCELLED = "cancelled", "Cancelled"


class Tenant(TenantMixin):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=40, unique=True)
    region = models.CharField(max_length=20, choices=Region.choices, default=Region.US_EAST)
    status = models.CharField(
        max_length=20, choices=TenantStatus.choices, default=TenantStatus.TRIALING, db_index=True
    )
    created_at = models.DateTimeField(default=clock.wall_now)
    # Erasure (tenants.services.erasure): asked for after cancellation, then done by a
    # worker. The row stays as a tombstone because invoices and payments point at it.
    erasure_requested_at = models.DateTimeField(null=True, blank=True)
    erased_at = models.DateTimeField(null=True, blank=True)

    # Schemas are made by tenants.services.schemas (pool or clone), never as a side
    # effect of save(), and never dropped implicitly.
    auto_create_schema = False
    auto_drop_schema = False

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.name

    @property
    def is_public(self) -> bool:
        return self.schema_name == "public"


class Domain(DomainMixin):
    def __str__(self):
        return self.domain


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, email, password=None, **extra):
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **extra):
        extra.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **extra)

    def get_by_natural_key(self, email):
        return self.get(email__iexact=email)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Global (public schema), identified by email; belongs to tenants through
    memberships."""

    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=clock.wall_now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]

    def __str__(self):
        return self.email


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    DEVELOPER = "developer", "Developer"
    BILLING = "billing", "Billing"
    VIEWER = "viewer", "Viewer"


class Membership(models.Model):
    """A user's role in a tenant. Kept in the public schema so that the login page on the
    public domain can send a user to their organisations, and staff see teams in one place."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    invited_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    invite_token_hash = models.CharField(max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(default=clock.wall_now)
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique_user_tenant")
        ]
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.user} in {self.tenant} as {self.role}"

    @property
    def is_pending(self) -> bool:
        return self.accepted_at is None


class ApiKey(models.Model):
    """A tenant's API key. Tenant-private: the table exists in each tenant's schema, so a
    key can only ever be found on its own organisation's domain. The secret is shown once;
    only its SHA-256 is stored (the secret is 32 random bytes, so a slow hash adds nothing)."""

    tenant_private = True

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    scopes = ArrayField(models.CharField(max_length=40), default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+",
        db_constraint=False,
    )
    created_at = models.DateTimeField(default=clock.wall_now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class AuditEvent(models.Model):
    """Append-only record of every state change. PostgreSQL refuses UPDATE and DELETE on
    this table (trigger in migration 0002). Public so staff read one trail; tenant owners
    see their own rows. Foreign keys are not enforced so that erasing a tenant or user
    never has to touch the trail."""

    occurred_at = models.DateTimeField(db_index=True)
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False,
        related_name="+",
    )
    actor = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False,
        related_name="+",
    )
    actor_label = models.CharField(max_length=200)
    action = models.CharField(max_length=80, db_index=True)
    target_type = models.CharField(max_length=80, blank=True)
    target_id = models.CharField(max_length=80, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-occurred_at"], name="audit_tenant_time")]

    def __str__(self):
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action}"


class TestClock(models.Model):
    """A tenant's simulated time (test mode only, SPEC §9)."""

    __test__ = False  # not a pytest test class

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="test_clock")
    frozen_time = models.DateTimeField()
    created_at = models.DateTimeField(default=clock.wall_now)

    def __str__(self):
        return f"{self.tenant} at {self.frozen_time:%Y-%m-%d %H:%M:%S}"


class ScheduledJob(models.Model):
    """A piece of a tenant's due work (trial end, renewal, retry...), run by the dispatcher
    once the tenant's own clock reaches `due_at`. Kinds are registered in
    tenants.services.scheduling by the app that owns the work."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="scheduled_jobs")
    kind = models.CharField(max_length=60)
    key = models.CharField(max_length=120, help_text="Idempotency key within tenant and kind.")
    due_at = models.DateTimeField()
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=clock.wall_now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "kind", "key"], name="job_unique_key")
        ]
        indexes = [
            models.Index(
                fields=["due_at"], name="job_pending_due",
                condition=models.Q(status="pending"),
            )
        ]
        ordering = ["due_at", "id"]

    def __str__(self):
        return f"{self.kind} for {self.tenant_id} at {self.due_at:%Y-%m-%d %H:%M}"


class PooledSchema(models.Model):
    """A ready, empty tenant schema waiting for a signup (see tenants.services.schemas)."""

    schema_name = models.CharField(max_length=63, unique=True)
    fingerprint = models.CharField(max_length=64, help_text="Migration state it was built at.")
    created_at = models.DateTimeField(default=clock.wall_now)

    def __str__(self):
        return self.schema_name


class OutboxEvent(models.Model):
    """An event for the tenant's webhooks (`usage.threshold`, `invoice.paid`...), written in
    the same transaction as the change it reports; delivery comes with tenant webhooks."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="outbox_events")
    type = models.CharField(max_length=60)
    payload = models.JSONField()
    created_at = models.DateTimeField(default=clock.wall_now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["delivered_at", "created_at"], name="outbox_undelivered")]

    def __str__(self):
        return f"{self.type} for {self.tenant_id}"


class DataExport(models.Model):
    """A tenant's data as a zip archive (tenants.services.exports), built by a worker,
    downloadable once, removed after `expires_at`. Public, so one beat task cleans up
    every tenant's expired files; the archive itself is a file under
    AEROLITH_EXPORTS_DIR named by a random token."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        BUILDING = "building", "Building"
        READY = "ready", "Ready to download"
        FAILED = "failed", "Failed"
        DOWNLOADED = "downloaded", "Downloaded"
        EXPIRED = "expired", "Expired"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="data_exports")
    requested_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        db_constraint=False,
    )
    requested_by_label = models.CharField(max_length=200)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    token = models.CharField(max_length=64, unique=True, help_text="Names the file on disk.")
    size_bytes = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=clock.wall_now)
    built_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    downloaded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "expires_at"], name="export_status_expiry")]
        constraints = [
            # One export at a time per tenant: a second request while one is being built
            # would only duplicate the work.
            models.UniqueConstraint(fields=["tenant"], condition=models.Q(status__in=["pending", "building"]),
                                    name="export_one_in_flight_per_tenant"),
        ]

    def __str__(self):
        return f"Export {self.pk} of {self.tenant_id} ({self.status})"


class SsoConfig(models.Model):
    """The tenant's OpenID Connect provider (SPEC §8, Enterprise and Custom plans).
    Tenant-private: the one row lives in the tenant's schema (its primary key is pinned to
    1), so another organisation's domain cannot even find it. The client secret is sealed
    with aerolith.crypto (context `sso:<tenant id>`); `discovery` keeps the endpoints read
    from the issuer's metadata when the configuration was last saved."""

    tenant_private = True

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    issuer = models.URLField(max_length=300)
    client_id = models.CharField(max_length=255)
    client_secret_sealed = models.TextField()
    default_role = models.CharField(max_length=20, choices=Role.choices, default=Role.VIEWER)
    enabled = models.BooleanField(default=False)
    allowed_domains = ArrayField(models.CharField(max_length=253), default=list, blank=True)
    discovery = models.JSONField(default=dict)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+",
        db_constraint=False,
    )
    created_at = models.DateTimeField(default=clock.wall_now)
    updated_at = models.DateTimeField(default=clock.wall_now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(id=1), name="ssoconfig_one_per_tenant"),
            models.CheckConstraint(condition=~models.Q(default_role="owner"),
                                   name="ssoconfig_default_role_not_owner"),
        ]

    def __str__(self):
        return f"SSO via {self.issuer}"


# Two-factor devices (tenants/otp_devices.py: keys sealed, recovery codes hashed) and
# webhook endpoints and deliveries (tenants/webhooks/) live in their own modules; imported
# here so that Django registers them with this app.
from .otp_devices import RecoveryCode, RecoveryCodeDevice, TotpDevice  # noqa: E402,F401
from .webhooks.models import WebhookDelivery, WebhookEndpoint  # noqa: E402,F401
