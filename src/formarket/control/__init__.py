"""The control plane: the HTTP API through which a signed-in user manages their keys, their
deployments and sees their usage, from any machine and with no clone of the marketplace.

    context      what the API works with: the accounts, the farm's settings, GitHub's sign-in
    limits       per-account (and, before sign-in, per-address) rate limits
    deployments  the desired deployments by account, read once per branch tip
    usage        an account's own usage by day and deployment, through formarket.usage
    invoices     an account's invoices of the closed periods (GET /v1/invoices[/{period}])
    dashboard_invoices   the dashboard's pages of them, and their download
    api          the routes (FastAPI) and their OpenAPI document
"""

from formarket.control.api import create_app, openapi_document
from formarket.control.context import Control

__all__ = ["Control", "create_app", "openapi_document"]
