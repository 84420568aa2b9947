"""HelloQuitteX shared package: what every service needs, and nothing service-specific."""
