"""secd.connect(): a PyMySQL connection to the run's datasets.

In a run the container has no network: the node serves the dataset server on a unix socket at
$DB_SOCKET (/run/mysqld/mysqld.sock), with a temporary account in DB_USER/DB_PASS that may only
SELECT the run's datasets. Outside secd, set DB_HOST, DB_PORT, DB_USER and DB_PASS (or DB_SOCKET)
to a copy of the data and the same code runs.
"""

import os

from ._env import datasets


def _database_for(name):
    catalog = datasets()
    if name is None:
        # With exactly one MySQL dataset there is nothing to choose.
        mysql = [entry["database"] for entry in catalog.values() if entry.get("kind") == "mysql"]
        return mysql[0] if len(mysql) == 1 else None
    entry = catalog.get(name)
    if entry is None:
        return name  # a MySQL database name, as on a laptop
    if entry.get("kind") != "mysql":
        raise ValueError("dataset %r is a file dataset: read it under %s" % (name, entry.get("path")))
    return entry["database"]


def connect(database=None, **options):
    """Open a PyMySQL connection to the run's datasets.

    `database` may be a dataset name (as in secd.yml) or a MySQL database name; None picks the run's
    only MySQL dataset when it has exactly one, else no default database. Other keyword arguments go
    to pymysql.connect (e.g. cursorclass=pymysql.cursors.DictCursor).
    """
    try:
        import pymysql  # imported here: the rest of the SDK works without PyMySQL
    except ImportError:
        raise ImportError(
            "secd.connect() needs PyMySQL, which is not installed: pip install PyMySQL "
            "(or apt install python3-pymysql); secd/base has it"
        ) from None

    user = os.environ.get("DB_USER")
    if not user:
        raise RuntimeError(
            "secd.connect(): no dataset credentials (DB_USER is not set). In a secd run this means no "
            "MySQL dataset was granted to it: check datasets: in secd.yml and ask the data owner for a "
            "grant. Outside secd, set DB_HOST, DB_PORT, DB_USER and DB_PASS."
        )
    where = {}
    socket_path = os.environ.get("DB_SOCKET")
    if socket_path and os.path.exists(socket_path):
        where["unix_socket"] = socket_path
    else:
        where["host"] = os.environ.get("DB_HOST") or "localhost"
        where["port"] = int(os.environ.get("DB_PORT") or 3306)
    settings = {"charset": "utf8mb4"}
    settings.update(options)
    return pymysql.connect(
        user=user,
        password=os.environ.get("DB_PASS", ""),
        database=_database_for(database),
        **where,
        **settings
    )
