from django.urls import path

from .. import staff_otp
from . import api_keys, organization, security, sso, team, views

public_patterns = [
    path("", views.home, name="home"),
    path("signup", views.signup, name="signup"),
    path("login", views.public_login, name="public-login"),
    path("login/verify", views.login_verify, name="public-login-verify"),
    path("staff/two-factor", staff_otp.staff_verify, name="staff-2fa-verify"),
    path("staff/two-factor/setup", staff_otp.staff_setup, name="staff-2fa-setup"),
]

tenant_patterns = [
    path("", views.dashboard, name="dashboard"),
    path("login", views.TenantLoginView.as_view(), name="login"),
    path("login/continue", views.login_continue, name="login-continue"),
    path("login/verify", views.login_verify, name="login-verify"),
    path("security", security.security, name="security"),
    path("security/two-factor", security.security_enrol, name="security-2fa-enrol"),
    path("security/two-factor/disable", security.security_disable, name="security-2fa-disable"),
    path("security/recovery-codes", security.security_recovery_codes,
         name="security-recovery-codes"),
    path("logout", views.logout_view, name="logout"),
    path("invitations/<str:token>", views.accept_invitation, name="accept-invitation"),
    path("organization", organization.organization, name="organization"),
    path("organization/export", organization.export_request, name="organization-export"),
    path("organization/exports/<int:pk>/download", organization.export_download,
         name="organization-export-download"),
    path("organization/erasure", organization.erasure_request, name="organization-erasure"),
    path("security/sso", sso.sso_settings, name="sso-settings"),
    path("sso/login", sso.sso_login, name="sso-login"),
    path("sso/callback", sso.sso_callback, name="sso-callback"),
    path("api-keys", api_keys.api_key_list, name="api-keys"),
    path("api-keys/new", api_keys.api_key_new, name="api-key-new"),
    path("api-keys/<int:pk>/revoke", api_keys.api_key_revoke, name="api-key-revoke"),
    path("team", team.team, name="team"),
    path("team/invite", team.team_invite, name="team-invite"),
    path("team/<int:pk>/role", team.team_role, name="team-role"),
    path("team/<int:pk>/remove", team.team_remove, name="team-remove"),
    path("audit", team.audit_log, name="audit"),
]
