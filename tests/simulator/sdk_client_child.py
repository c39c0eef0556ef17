"""Run by mbed-cloud-sdk 2.2.0's interpreter (a throwaway venv): drive the simulator, print what it saw.

argv: simulator URL, API key, callback URL. Prints one JSON object; any SDK error is a traceback and a
non-zero exit. This file must not import devicehooks (it runs in the SDK's venv).
"""

import json
import sys
import time

import requests
from mbed_cloud import ConnectAPI
from mbed_cloud.device_directory import DeviceDirectoryAPI


def wait_for_pull_channel(url: str, key: str) -> None:
    """Until the SDK's poll thread has opened the long-poll channel (at most 10 s)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = requests.get(
            url + "/v2/notification/channel", headers={"Authorization": "Bearer " + key}, timeout=5
        )
        if got.status_code == 200 and got.json().get("delivery_mechanism") == "LONG_POLLING":
            return
        time.sleep(0.05)
    raise SystemExit("the SDK's notification thread never opened the long-poll channel")


def main() -> None:
    """The calls the issue names, in the order a user makes them."""
    url, key, hook = sys.argv[1:4]
    config = {"api_key": key, "host": url, "autostart_notification_thread": False}
    connect = ConnectAPI(config)
    out = {}
    devices = list(connect.list_connected_devices())  # GET /v3/devices/?filter=state%3Dregistered
    out["devices"] = [device.id for device in devices]
    out["device"] = DeviceDirectoryAPI(config).get_device(devices[0].id).id  # GET /v3/devices/{id}/
    out["subscriptions"] = connect.list_device_subscriptions(devices[0].id)
    connect.start_notifications()
    wait_for_pull_channel(url, key)
    connect.update_webhook(hook, headers={"Authorization": "Bearer hook-secret"})  # poll thread running
    out["webhook"] = connect.get_webhook().url
    connect.stop_notifications()
    connect.delete_subscriptions()  # lists the connected devices, deletes each one's subscriptions
    connect.delete_webhook()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
