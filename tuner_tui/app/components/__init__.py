"""The app's widgets and screens, one module each."""
