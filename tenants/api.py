"""Tenant API (SPEC §10): signup on the public domain; tokens, tenant, members, API keys,
audit trail and test clock on the tenant's domain."""
from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import APIException, AuthenticationFailed, NotFound
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken

from aerolith.api.pagination import CursorPagination
from aerolith.api.schema import PROBLEM_RESPONSES
from aerolith.errors import ValidationFailed

from .models import ApiKey, AuditEvent, Membership, Region, Role, TestClock
from .permissions import ALL_SCOPES, Action, member_principal
from .selectors import audit_events_of, members_of, tenant_url
from .services import api_keys, clocks, members, two_factor
from .services.signup import tenant_signup
from .throttle import is_locked_out, lockout_problem, login_failed


def _require_tenant_domain(request):
    if request.tenant.is_public:
        raise NotFound("This endpoint lives on your organisation's domain, "
                       "e.g. https://<slug>.aerolith.localhost/api/v1/...")


class TenantOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()
    region = serializers.CharField()
    status = serializers.CharField()
    domain = serializers.CharField()
    plan = serializers.DictField(allow_null=True)
    created_at = serializers.DateTimeField()


def tenant_payload(tenant) -> dict:
    subscription = getattr(tenant, "subscription", None)
    plan = subscription.plan if subscription else None
    return {
        "id": tenant.pk, "name": tenant.name, "slug": tenant.slug, "region": tenant.region,
        "status": tenant.status, "domain": tenant.get_primary_domain().domain,
        "plan": {"code": plan.code, "name": plan.name} if plan else None,
        "created_at": tenant.created_at,
    }


# --- signup (public domain) -------------------------------------------------------------

class SignupIn(serializers.Serializer):
    """Shape only; the service checks content (slug rules, password strength...) so that
    every problem is reported at once."""

    organization = serializers.CharField(max_length=100, allow_blank=True)
    slug = serializers.CharField(max_length=30, allow_blank=True)
    email = serializers.CharField(max_length=254, allow_blank=True)
    password = serializers.CharField(max_length=128, write_only=True, allow_blank=True,
                                     trim_whitespace=False)
    plan = serializers.CharField(max_length=40)
    region = serializers.ChoiceField(choices=Region.values, default=Region.US_EAST)
    full_name = serializers.CharField(max_length=150, required=False, default="", allow_blank=True)


class SignupOut(serializers.Serializer):
    tenant = TenantOut()
    domain = serializers.CharField()
    portal_url = serializers.CharField()
    api_base_url = serializers.CharField()
    owner = serializers.DictField()
    subscription = serializers.DictField()


class SignupView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(request=SignupIn, responses={201: SignupOut, **PROBLEM_RESPONSES},
                   summary="Create an organisation, its owner and its trial")
    def post(self, request):
        data = SignupIn(data=request.data)
        data.is_valid(raise_exception=True)
        result = tenant_signup(**data.validated_data)
        sub = result.tenant.subscription
        return Response(
            {
                "tenant": tenant_payload(result.tenant),
                "domain": result.domain.domain,
                "portal_url": tenant_url(result.tenant, "/"),
                "api_base_url": tenant_url(result.tenant, "/api/v1/"),
                "owner": {"id": result.user.pk, "email": result.user.email, "role": Role.OWNER},
                "subscription": {"plan": sub.plan.code, "status": sub.status,
                                 "trial_end": sub.trial_end},
            },
            status=status.HTTP_201_CREATED,
        )


# --- tokens -------------------------------------------------------------------------------

class TokenIn(serializers.Serializer):
    email = serializers.CharField(max_length=254)
    password = serializers.CharField(max_length=128)
    otp = serializers.CharField(max_length=32, required=False, allow_blank=True,
                                help_text="The 6-digit code from the authenticator app, or a "
                                          "recovery code; required when the account has "
                                          "two-factor authentication.")


class OtpRefused(APIException):
    """401 with its own problem code (otp_required / otp_invalid), so a client knows to ask
    for the code rather than the password again."""

    status_code = 401
    auth_header = 'Bearer realm="api"'

    def __init__(self, detail: str, code: str):
        super().__init__(detail, code)
        self.default_code = code


class RefreshIn(serializers.Serializer):
    refresh = serializers.CharField()


class TokenOut(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField(required=False)


class _CredentialsInBody(APIView):
    """Token endpoints read credentials from the body, not a header. Without an
    authenticator DRF would turn a wrong password into a 403; it is a 401."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request):
        return 'Bearer realm="api"'


class TokenView(_CredentialsInBody):
    @extend_schema(request=TokenIn, responses={200: TokenOut, **PROBLEM_RESPONSES},
                   summary="Exchange email and password for a JWT pair on this organisation")
    def post(self, request):
        _require_tenant_domain(request)
        data = TokenIn(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, email=data.validated_data["email"].strip(),
                            password=data.validated_data["password"])
        if user is None and is_locked_out(request):
            return lockout_problem()
        if user is None or member_principal(request.tenant, user) is None:
            raise AuthenticationFailed("Email or password is wrong, or this account is not a "
                                       "member of this organisation.")
        if two_factor.two_factor_enabled(user):
            self._check_otp(request, user, data.validated_data.get("otp", ""))
            if is_locked_out(request):
                return lockout_problem()
        refresh = RefreshToken.for_user(user)
        refresh["tenant_id"] = request.tenant.pk
        return Response({"access": str(refresh.access_token), "refresh": str(refresh)})


    @staticmethod
    def _check_otp(request, user, otp: str) -> None:
        if not otp.strip():
            raise OtpRefused("This account has two-factor authentication: send the code from "
                             "the authenticator app (or a recovery code) as `otp` with the "
                             "email and password.", "otp_required")
        try:
            two_factor.otp_check(user, otp, field="otp")
        except ValidationFailed as error:
            login_failed(request, user.email)
            if not is_locked_out(request):
                raise OtpRefused(error.detail, "otp_invalid") from None


class TokenRefreshView(_CredentialsInBody):
    @extend_schema(request=RefreshIn, responses={200: TokenOut, **PROBLEM_RESPONSES},
                   summary="Exchange a refresh token for a new access token")
    def post(self, request):
        _require_tenant_domain(request)
        data = RefreshIn(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            refresh = RefreshToken(data.validated_data["refresh"])
        except TokenError as exc:
            raise AuthenticationFailed("The refresh token is invalid or expired; sign in again "
                                       "at /api/v1/auth/token.") from exc
        if refresh.get("tenant_id") != request.tenant.pk:
            raise NotFound("Nothing here: this organisation does not exist for your credentials.")
        return Response({"access": str(refresh.access_token)})


# --- the tenant ---------------------------------------------------------------------------

class TenantView(APIView):
    @extend_schema(responses={200: TenantOut, **PROBLEM_RESPONSES}, summary="This organisation")
    def get(self, request):
        return Response(tenant_payload(request.tenant))


# --- members ------------------------------------------------------------------------------

class MemberOut(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email")
    status = serializers.SerializerMethodField()

    class Meta:
        model = Membership
        fields = ["id", "email", "role", "status", "created_at", "accepted_at"]

    def get_status(self, obj) -> str:
        return "invited" if obj.is_pending else "active"


class MemberInviteIn(serializers.Serializer):
    email = serializers.CharField(max_length=254)
    role = serializers.ChoiceField(choices=Role.choices)


class MemberPatchIn(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


@extend_schema(responses={**PROBLEM_RESPONSES})
class MemberViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = MemberOut
    required_actions = {"POST": Action.MANAGE_MEMBERS, "PATCH": Action.MANAGE_MEMBERS,
                        "DELETE": Action.MANAGE_MEMBERS}
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no tenant
            return Membership.objects.none()
        return members_of(self.request.tenant)

    @extend_schema(request=MemberInviteIn, responses={201: MemberOut, **PROBLEM_RESPONSES},
                   summary="Invite a member (an email with an accept link is sent)")
    def create(self, request):
        data = MemberInviteIn(data=request.data)
        data.is_valid(raise_exception=True)
        membership, _token = members.member_invite(principal=request.auth, **data.validated_data)
        return Response(MemberOut(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=MemberPatchIn, responses={200: MemberOut, **PROBLEM_RESPONSES},
                   summary="Change a member's role")
    def partial_update(self, request, pk=None):
        data = MemberPatchIn(data=request.data)
        data.is_valid(raise_exception=True)
        membership = members.member_change_role(principal=request.auth, membership_id=_int_id(pk),
                                                role=data.validated_data["role"])
        return Response(MemberOut(membership).data)

    @extend_schema(responses={204: None, **PROBLEM_RESPONSES}, summary="Remove a member")
    def destroy(self, request, pk=None):
        members.member_remove(principal=request.auth, membership_id=_int_id(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _int_id(raw) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = -1
    if not 0 < value < 2**63:
        raise NotFound(f"'{raw}' is not an id of this organisation.")
    return value


# --- API keys -----------------------------------------------------------------------------

class ApiKeyOut(serializers.ModelSerializer):
    active = serializers.BooleanField(source="is_active")

    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "scopes", "active", "created_at", "last_used_at",
                  "revoked_at"]


class ApiKeyCreatedOut(ApiKeyOut):
    secret = serializers.CharField(help_text="The full key. Shown only in this response.")

    class Meta(ApiKeyOut.Meta):
        fields = ApiKeyOut.Meta.fields + ["secret"]


class ApiKeyIn(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=ALL_SCOPES),
                                   max_length=len(ALL_SCOPES), allow_empty=False)


@extend_schema(responses={**PROBLEM_RESPONSES})
class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = ApiKeyOut
    required_actions = {"POST": Action.MANAGE_API_KEYS, "DELETE": Action.MANAGE_API_KEYS}
    http_method_names = ["get", "post", "delete", "head", "options"]

    def get_queryset(self):
        return ApiKey.objects.all()

    def get_object(self):
        key = ApiKey.objects.filter(pk=_int_id(self.kwargs["pk"])).first()
        if key is None:
            raise NotFound("There is no such API key in this organisation.")
        return key

    @extend_schema(request=ApiKeyIn, responses={201: ApiKeyCreatedOut, **PROBLEM_RESPONSES},
                   summary="Create a key; its secret is returned once")
    def create(self, request):
        data = ApiKeyIn(data=request.data)
        data.is_valid(raise_exception=True)
        key, secret = api_keys.api_key_create(principal=request.auth, **data.validated_data)
        key.secret = secret
        return Response(ApiKeyCreatedOut(key).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None, **PROBLEM_RESPONSES}, summary="Revoke a key")
    def destroy(self, request, pk=None):
        api_keys.api_key_revoke(principal=request.auth, key_id=_int_id(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- audit trail --------------------------------------------------------------------------

class AuditEventOut(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_label")

    class Meta:
        model = AuditEvent
        fields = ["id", "occurred_at", "actor", "action", "target_type", "target_id",
                  "before", "after", "request_id"]


class AuditEventPagination(CursorPagination):
    ordering = ("-occurred_at", "-id")


@extend_schema(responses={**PROBLEM_RESPONSES})
class AuditEventViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = AuditEventOut
    pagination_class = AuditEventPagination
    required_actions = {"GET": Action.OWN}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AuditEvent.objects.none()
        return audit_events_of(self.request.tenant)


# --- test clock ---------------------------------------------------------------------------

class ClockAdvanceIn(serializers.Serializer):
    seconds = serializers.IntegerField(min_value=1, max_value=3 * 366 * 86400, required=False)
    to = serializers.DateTimeField(required=False)

    def validate(self, attrs):
        if ("seconds" in attrs) == ("to" in attrs):
            raise serializers.ValidationError({"seconds": "Give either 'seconds' or 'to' (ISO-8601)."})
        return attrs


class ClockOut(serializers.Serializer):
    frozen_time = serializers.DateTimeField()
    jobs_run = serializers.ListField(child=serializers.DictField(), required=False)


class TestClockView(APIView):
    @extend_schema(responses={200: ClockOut, **PROBLEM_RESPONSES}, summary="The test clock")
    def get(self, request):
        clocks.require_test_mode()
        test_clock = TestClock.objects.filter(tenant=request.tenant).first()
        if test_clock is None:
            raise NotFound("This organisation has no test clock; advancing attaches one.")
        return Response({"frozen_time": test_clock.frozen_time})


class TestClockAdvanceView(APIView):
    required_actions = {"POST": Action.MANAGE_TEST_CLOCK}
    allowed_when_suspended = True  # time moves on whatever the tenant owes

    @extend_schema(request=ClockAdvanceIn, responses={200: ClockOut, **PROBLEM_RESPONSES},
                   summary="Advance the test clock (test mode only), running due work in order")
    def post(self, request):
        clocks.require_test_mode()
        data = ClockAdvanceIn(data=request.data)
        data.is_valid(raise_exception=True)
        test_clock, ran = clocks.tenant_clock_advance(tenant=request.tenant, actor=request.auth,
                                                      **data.validated_data)
        return Response({
            "frozen_time": test_clock.frozen_time,
            "jobs_run": [{"kind": j.kind, "key": j.key, "due_at": j.due_at} for j in ran],
        })

