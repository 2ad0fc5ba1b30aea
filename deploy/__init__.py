"""Running the app as several Streamlit replicas behind nginx: ``python -m deploy.local`` (one
machine or one container) and ``deploy/kubernetes.yaml`` (a cluster). See docs/hosting.md."""
