import math
from dataclasses import dataclass


@dataclass
class Circle:
    radius: float

    def diameter(self) -> float:
        return 2 * self.radius

    def circumference(self) -> float:
        return math.pi * self.diameter()

    def scaled(self, factor: float) -> "Circle":
        return Circle(self.radius * factor)

    def area(self) -> float:
        """The area of the circle."""
        <CURSOR>

    def __str__(self) -> str:
        return f"Circle({self.radius})"
