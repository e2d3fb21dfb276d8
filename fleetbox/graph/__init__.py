"""Microsoft Graph for fleetbox.

The subpackage holds what the Graph-backed queues need:

- ``tokens``: msal token acquisition (client credentials for mail, a delegated service account for Teams);
- ``client``: the aiohttp Graph client (error envelope, Retry-After, upload sessions, delta links);
- ``processors``: the queue handlers that send Teams messages and mail and receive change notifications;
- ``simulator`` (with its ``sim_*`` modules): a local HTTPS Microsoft Graph + Entra simulator that the
  production msal and aiohttp code talk to unchanged, in tests and in simulator mode.
"""
