"""The platform's policy pack: rules every declared Kubernetes object must follow."""
