"""Alert notifications delivered to webhooks (json per Standard Webhooks, Slack, Teams, PagerDuty)
through fleetbox's own queue ``alert-webhooks``; what is sent is recorded by
:mod:`fleetbox.monitor.notify`."""
