"""The tools and the output class the backends' tool tests share."""

from __future__ import annotations

from pydantic import BaseModel


def get_weather(city: str, unit: str = "celsius") -> str:
    """Get the current weather in a city.

    Args:
        city: The city and state, e.g. San Francisco, CA.
        unit: celsius or fahrenheit.
    """
    return f"18 degrees {unit} in {city}"


def get_time(city: str) -> str:
    """Get the local time in a city."""
    return f"14:05 in {city}"


class Conversion(BaseModel):
    value: float
    unit: str
