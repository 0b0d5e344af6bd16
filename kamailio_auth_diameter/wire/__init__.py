"""Wire formats: one module per format, bytes in and bytes out, no sockets."""
