"""secd.connect() against the real MariaDB: over DB_HOST/DB_PORT, and over a unix socket (DB_SOCKET)."""

import json
import os
import unittest
import uuid
from unittest import mock

import pymysql

import secd

ADMIN = {
    "host": os.environ.get("SECD_TEST_MYSQL_HOST", "127.0.0.1"),
    "port": int(os.environ.get("SECD_TEST_MYSQL_PORT", "3306")),
    "user": os.environ.get("SECD_TEST_MYSQL_USER", "root"),
    "password": os.environ.get("SECD_TEST_MYSQL_PASSWORD", ""),
}
SERVER_SOCKET = os.environ.get("SECD_TEST_MYSQL_SOCKET", "/run/mysqld/mysqld.sock")


class ConnectTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        suffix = uuid.uuid4().hex[:8]
        cls.database = "secd_sdk_%s" % suffix
        cls.user = "secd_sdk_%s" % suffix
        cls.password = uuid.uuid4().hex
        cls.admin = pymysql.connect(autocommit=True, **ADMIN)
        with cls.admin.cursor() as c:
            c.execute("CREATE DATABASE `%s`" % cls.database)
            c.execute("CREATE TABLE `%s`.people (name VARCHAR(20), age INT)" % cls.database)
            c.execute("INSERT INTO `%s`.people VALUES ('ada', 36), ('alan', 41)" % cls.database)
            c.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (cls.user, cls.password))
            c.execute("GRANT SELECT ON `%s`.* TO %%s@'%%%%'" % cls.database, (cls.user,))

    @classmethod
    def tearDownClass(cls):
        with cls.admin.cursor() as c:
            c.execute("DROP USER IF EXISTS %s@'%%'", (cls.user,))
            c.execute("DROP DATABASE IF EXISTS `%s`" % cls.database)
        cls.admin.close()

    def env(self, **extra):
        given = {"people": {"kind": "mysql", "database": self.database}}
        values = {"DB_USER": self.user, "DB_PASS": self.password, "SECD_DATASETS": json.dumps(given)}
        values.update(extra)
        return mock.patch.dict(os.environ, values, clear=True)

    def ages(self, conn):
        with conn:
            with conn.cursor() as c:
                c.execute("SELECT name, age FROM people ORDER BY name")
                return c.fetchall()

    def test_connects_over_tcp_by_dataset_name(self):
        with self.env(DB_HOST=ADMIN["host"], DB_PORT=str(ADMIN["port"])):
            self.assertEqual(self.ages(secd.connect("people")), (("ada", 36), ("alan", 41)))

    def test_the_only_mysql_dataset_is_the_default_database(self):
        with self.env(DB_HOST=ADMIN["host"], DB_PORT=str(ADMIN["port"])):
            self.assertEqual(len(self.ages(secd.connect())), 2)

    def test_connects_over_the_unix_socket_when_DB_SOCKET_exists(self):
        self.assertTrue(os.path.exists(SERVER_SOCKET), "MariaDB's socket %s is missing" % SERVER_SOCKET)
        # DB_HOST points nowhere: only the socket can work.
        with self.env(DB_SOCKET=SERVER_SOCKET, DB_HOST="192.0.2.1", DB_PORT="1"):
            conn = secd.connect(self.database)
            self.assertIsNotNone(conn.unix_socket)
            self.assertEqual(len(self.ages(conn)), 2)

    def test_without_credentials_it_says_why(self):
        with mock.patch.dict(os.environ, {}, clear=True):
            with self.assertRaisesRegex(RuntimeError, "no dataset credentials"):
                secd.connect()

    def test_a_file_dataset_is_not_a_database(self):
        with self.env(SECD_DATASETS=json.dumps({"scans": {"kind": "path", "path": "/datasets/scans"}})):
            with self.assertRaisesRegex(ValueError, "file dataset"):
                secd.connect("scans")


if __name__ == "__main__":
    unittest.main()
