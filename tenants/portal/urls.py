from django.urls import path

from . import views

public_patterns = [
    path("", views.home, name="home"),
    path("signup", views.signup, name="signup"),
    path("login", views.public_login, name="public-login"),
]

tenant_patterns = [
    path("", views.dashboard, name="dashboard"),
    path("login", views.TenantLoginView.as_view(), name="login"),
    path("login/continue", views.login_continue, name="login-continue"),
    path("logout", views.logout_view, name="logout"),
    path("invitations/<str:token>", views.accept_invitation, name="accept-invitation"),
]
