"""The CI trigger: a program of its own, one signed HTTP request per connection systemd accepted.

`updater-trigger.socket` (Accept=yes) starts one `updater-trigger@.service` per connection, with
the connection as stdin; it runs `python -m updater.trigger` (`__main__.py`). `http.py` reads one
HTTP/1.x request under limits and one deadline (h11 parses it), writes one answer and closes;
`rules.py` holds what the trigger decides: the secret, the signature, the route, the rate, and
asking for a run. Nothing else in the updater imports this package, so `updater run` never loads
h11.
"""
