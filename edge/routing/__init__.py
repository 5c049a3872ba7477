"""Pure routing: google.api.http path templates and the compiled route table."""
