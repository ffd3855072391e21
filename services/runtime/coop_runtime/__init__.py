"""What both services run on and neither owns: logging, NATS connection security and
broker construction, JetStream stream opening with one retry policy, the HTTP operations
routes and guard, and the ASGI server."""
