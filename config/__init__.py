"""Configuration shared by every entry point: settings, endpoints of the brokers and registry, clients' set-up, logs."""
