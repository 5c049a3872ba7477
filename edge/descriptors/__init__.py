"""Runtime protobuf descriptors: compiling .proto files, the registry, and HTTP rules."""
