"""web_map: the review application (FastAPI + Folium) and static map exports.

- :func:`create_app` builds the FastAPI application over a migrated weijian database;
- :func:`export_map` writes one self-contained HTML map of a run (for a 街镇 off the network);
- :func:`ensure_demo_users` creates the documented demo log-ins, one per role.
"""

from web_map.accounts import DemoUser, WebRole, ensure_demo_users
from web_map.app import create_app
from web_map.config import WebConfig
from web_map.errors import WebMapError
from web_map.maps import export_map

__all__ = [
    "DemoUser",
    "WebConfig",
    "WebMapError",
    "WebRole",
    "create_app",
    "ensure_demo_users",
    "export_map",
]
