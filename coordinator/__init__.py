"""The gRPC coordinator: services, error mapping, job scheduler and Ray dispatch. Owns all persistence."""
