"""A small example file for `fimble complete` and `fimble explain`."""


def fibonacci(n: int) -> list[int]:
    """Return the first n Fibonacci numbers."""
    numbers = [0, 1]
    while len(numbers) < n:
        
    return numbers[:n]


def is_prime(n: int) -> bool:
    """True when n is a prime number."""
    if n < 2:
        return False
    for k in range(2, int(n ** 0.5) + 1):
        if n % k == 0:
            return False
    return True
