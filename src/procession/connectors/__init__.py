"""Calls from the service to the outside: safe outbound HTTP and signed webhooks."""
