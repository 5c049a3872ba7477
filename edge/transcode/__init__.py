"""Translation between HTTP/JSON and protobuf messages."""
