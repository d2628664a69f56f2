"""Drives the router with the python `influxdb` client, as an application would.

Usage: python_client.py HOST PORT
Exits non-zero with a message on the first thing that differs from what
InfluxDB itself would answer.
"""
import sys

from influxdb import InfluxDBClient


def main(host, port):
    client = InfluxDBClient(host=host, port=int(port), database="pyclient")
    version = client.ping()
    assert version.startswith("1."), version
    client.create_database("pyclient")
    assert {"name": "pyclient"} in client.get_list_database(), client.get_list_database()
    points = [
        {
            "measurement": "cpu",
            "tags": {"host": "web%d" % i},
            "time": 1700000000000000000 + i,
            "fields": {"usage": 0.5 + i, "cores": 8, "name": "n%d" % i, "up": i % 2 == 0},
        }
        for i in range(100)
    ]
    assert client.write_points(points, time_precision="n", batch_size=30)
    result = client.query("SELECT count(usage) FROM cpu")
    counted = list(result.get_points())
    assert counted[0]["count"] == 100, counted
    rows = list(client.query("SELECT * FROM cpu WHERE host = 'web3'", epoch="ns").get_points())
    assert rows == [{"time": 1700000000000000003, "cores": 8, "host": "web3", "name": "n3", "up": False, "usage": 3.5}], rows
    # chunked=True is not exercised: this client cannot read a multi-chunk
    # msgpack answer from InfluxDB itself either ("unpack(b) received extra data").
    everything = list(client.query("SELECT usage FROM cpu").get_points())
    assert len(everything) == 100, len(everything)
    client.create_retention_policy("week", "7d", 1, database="pyclient")
    policies = [p["name"] for p in client.get_list_retention_policies("pyclient")]
    assert "week" in policies, policies
    client.drop_database("pyclient")
    assert {"name": "pyclient"} not in client.get_list_database()
    print("python influxdb client: all checks passed")


if __name__ == "__main__":
    main(*sys.argv[1:3])
