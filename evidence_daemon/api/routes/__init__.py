"""The API's routes, one ``APIRouter`` per resource; ``app.create_app`` includes them all.

Every route here starts from the dependencies in ``gate.py`` (who is asking, ``require`` for
what they may do) and calls the node's services; none runs SQL or builds a ledger entry by
hand. URLs live under ``API`` except ``/healthz``, ``/metrics`` and the console's pages.
"""

API = "/api/v1"
