"""The ThingsBoard bridge: Device Management events -> one ThingsBoard gateway connection, and back.

Modules: ``mapping`` (pure: event JSON -> gateway payloads, validation), ``stream`` (the Redis stream,
its consumer group and the device registry), ``gateway`` (the paho-mqtt connection), ``rpc`` (downlink
parsing and the async-tracker adapter), ``bridge`` (the process), ``cli`` (``devicehooks thingsboard``).
"""
