"""Reading and validating config/deploy.yml, destinations, secrets and env into typed objects."""
