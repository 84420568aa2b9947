"""HTTP routes, one module per resource, assembled in `services.gateway.app`."""
