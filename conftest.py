"""Root conftest: the project's own tests drive real pytest sessions through pytester."""

pytest_plugins = ["pytester"]
