"""The docstring moment, as a hole set: a new function written above existing code, its signature
and docstring typed, Enter pressed — the cursor after the auto-indent of an empty body.

44 small functions written for fimble (not from any public set), each in a file with code below
it (the module's other functions and a `__main__` block that calls the new one with literal
arguments: what pulls fill-in-the-middle into calls of the function itself). In the infilling
format of eval/holes.py: prompt (the file down to the docstring), canonical_solution (a reference
body), suffix (the code below), test (`check(candidate)`).
"""

from __future__ import annotations

from typing import Any

# (signature, docstring, reference body, checks as `candidate(...) == ...` expressions)
TASKS: list[tuple[str, str, str, list[str]]] = [
    ("count_vowels(text: str) -> int", "Return how many vowels (a, e, i, o, u, either case) are in text.",
     "return sum(1 for ch in text.lower() if ch in 'aeiou')",
     ["candidate('Hello World') == 3", "candidate('') == 0", "candidate('xyz') == 0", "candidate('AEIOU') == 5"]),
    ("fizzbuzz(n: int) -> list[str]",
     "Return the FizzBuzz sequence from 1 to n: 'Fizz' for multiples of 3, 'Buzz' for multiples of 5,\n"
     "    'FizzBuzz' for both, else the number as a string.",
     "out = []\nfor i in range(1, n + 1):\n    if i % 15 == 0:\n        out.append('FizzBuzz')\n"
     "    elif i % 3 == 0:\n        out.append('Fizz')\n    elif i % 5 == 0:\n        out.append('Buzz')\n"
     "    else:\n        out.append(str(i))\nreturn out",
     ["candidate(5) == ['1', '2', 'Fizz', '4', 'Buzz']", "candidate(15)[-1] == 'FizzBuzz'", "candidate(0) == []"]),
    ("primes_below(n: int) -> list[int]", "Return all prime numbers smaller than n, in increasing order.",
     "return [p for p in range(2, n) if all(p % d for d in range(2, int(p ** 0.5) + 1))]",
     ["candidate(10) == [2, 3, 5, 7]", "candidate(2) == []", "candidate(20) == [2, 3, 5, 7, 11, 13, 17, 19]"]),
    ("flatten(nested: list) -> list", "Flatten arbitrarily nested lists into one flat list, keeping the order.",
     "out = []\nfor item in nested:\n    if isinstance(item, list):\n        out.extend(flatten(item))\n"
     "    else:\n        out.append(item)\nreturn out",
     ["candidate([1, [2, [3, 4]], 5]) == [1, 2, 3, 4, 5]", "candidate([]) == []", "candidate([[[]]]) == []"]),
    ("chunk(items: list, size: int) -> list[list]",
     "Split items into consecutive chunks of the given size; the last chunk may be shorter.",
     "return [items[i:i + size] for i in range(0, len(items), size)]",
     ["candidate([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]", "candidate([], 3) == []",
      "candidate([1, 2], 5) == [[1, 2]]"]),
    ("is_palindrome(text: str) -> bool",
     "Return True if text reads the same backwards, ignoring case and any character that is not a letter or digit.",
     "cleaned = [ch.lower() for ch in text if ch.isalnum()]\nreturn cleaned == cleaned[::-1]",
     ["candidate('A man, a plan, a canal: Panama') is True", "candidate('abc') is False", "candidate('') is True"]),
    ("word_counts(text: str) -> dict[str, int]",
     "Count how often each word occurs in text; words are separated by whitespace and compared lowercased.",
     "counts = {}\nfor word in text.lower().split():\n    counts[word] = counts.get(word, 0) + 1\nreturn counts",
     ["candidate('a b A') == {'a': 2, 'b': 1}", "candidate('') == {}"]),
    ("running_sum(numbers: list[int]) -> list[int]", "Return the running (cumulative) sums of numbers.",
     "out, total = [], 0\nfor x in numbers:\n    total += x\n    out.append(total)\nreturn out",
     ["candidate([1, 2, 3]) == [1, 3, 6]", "candidate([]) == []", "candidate([5, -5]) == [5, 0]"]),
    ("second_largest(numbers: list[int]) -> int | None",
     "Return the second largest distinct value in numbers, or None when there are fewer than two distinct values.",
     "values = sorted(set(numbers))\nreturn values[-2] if len(values) >= 2 else None",
     ["candidate([3, 1, 4, 4]) == 3", "candidate([7, 7]) is None", "candidate([]) is None"]),
    ("capitalize_words(text: str) -> str",
     "Return text with the first letter of every space-separated word in upper case and the rest unchanged.",
     "return ' '.join(w[:1].upper() + w[1:] for w in text.split(' '))",
     ["candidate('hello world') == 'Hello World'", "candidate('a  b') == 'A  B'", "candidate('') == ''"]),
    ("gcd(a: int, b: int) -> int", "Return the greatest common divisor of two non-negative integers.",
     "while b:\n    a, b = b, a % b\nreturn a",
     ["candidate(12, 18) == 6", "candidate(7, 0) == 7", "candidate(17, 5) == 1"]),
    ("digit_sum(n: int) -> int", "Return the sum of the decimal digits of n (the sign is ignored).",
     "return sum(int(d) for d in str(abs(n)))",
     ["candidate(1234) == 10", "candidate(-56) == 11", "candidate(0) == 0"]),
    ("rotate_left(items: list, k: int) -> list",
     "Return a new list with items rotated k places to the left (k may exceed the length).",
     "if not items:\n    return []\nk %= len(items)\nreturn items[k:] + items[:k]",
     ["candidate([1, 2, 3, 4], 1) == [2, 3, 4, 1]", "candidate([1, 2, 3], 5) == [3, 1, 2]", "candidate([], 2) == []"]),
    ("dedupe(items: list) -> list", "Remove duplicates from items, keeping the first occurrence of each, in order.",
     "seen = set()\nout = []\nfor item in items:\n    if item not in seen:\n        seen.add(item)\n"
     "        out.append(item)\nreturn out",
     ["candidate([3, 1, 3, 2, 1]) == [3, 1, 2]", "candidate([]) == []"]),
    ("celsius_to_fahrenheit(celsius: float) -> float", "Convert a temperature from degrees Celsius to Fahrenheit.",
     "return celsius * 9 / 5 + 32",
     ["candidate(0) == 32", "candidate(100) == 212", "abs(candidate(-40) - -40) < 1e-9"]),
    ("factorial(n: int) -> int", "Return n! for a non-negative integer n (0! is 1).",
     "result = 1\nfor i in range(2, n + 1):\n    result *= i\nreturn result",
     ["candidate(0) == 1", "candidate(5) == 120", "candidate(1) == 1"]),
    ("fibonacci(n: int) -> list[int]", "Return the first n Fibonacci numbers, starting 0, 1.",
     "out = []\na, b = 0, 1\nfor _ in range(n):\n    out.append(a)\n    a, b = b, a + b\nreturn out",
     ["candidate(5) == [0, 1, 1, 2, 3]", "candidate(0) == []", "candidate(1) == [0]"]),
    ("reverse_words(sentence: str) -> str", "Return the words of sentence in reverse order, joined by single spaces.",
     "return ' '.join(reversed(sentence.split()))",
     ["candidate('one two  three') == 'three two one'", "candidate('') == ''"]),
    ("count_chars(text: str) -> dict[str, int]", "Map each character of text to the number of times it occurs.",
     "counts = {}\nfor ch in text:\n    counts[ch] = counts.get(ch, 0) + 1\nreturn counts",
     ["candidate('abca') == {'a': 2, 'b': 1, 'c': 1}", "candidate('') == {}"]),
    ("is_anagram(a: str, b: str) -> bool",
     "Return True if a and b contain the same letters the same number of times, ignoring case and spaces.",
     "def norm(s):\n    return sorted(s.replace(' ', '').lower())\nreturn norm(a) == norm(b)",
     ["candidate('Listen', 'Silent') is True", "candidate('abc', 'abd') is False",
      "candidate('dormitory', 'dirty room') is True"]),
    ("merge_sorted(a: list[int], b: list[int]) -> list[int]", "Merge two sorted lists into one sorted list.",
     "out = []\ni = j = 0\nwhile i < len(a) and j < len(b):\n    if a[i] <= b[j]:\n        out.append(a[i])\n"
     "        i += 1\n    else:\n        out.append(b[j])\n        j += 1\nreturn out + a[i:] + b[j:]",
     ["candidate([1, 4, 6], [2, 3, 7]) == [1, 2, 3, 4, 6, 7]", "candidate([], [1]) == [1]"]),
    ("transpose(matrix: list[list[int]]) -> list[list[int]]", "Return the transpose of a rectangular matrix.",
     "return [list(row) for row in zip(*matrix)]",
     ["candidate([[1, 2, 3], [4, 5, 6]]) == [[1, 4], [2, 5], [3, 6]]", "candidate([]) == []"]),
    ("max_profit(prices: list[int]) -> int",
     "Return the largest profit from buying once and selling once later; 0 when no profit is possible.",
     "best, low = 0, float('inf')\nfor p in prices:\n    low = min(low, p)\n    best = max(best, p - low)\n"
     "return best",
     ["candidate([7, 1, 5, 3, 6, 4]) == 5", "candidate([7, 6, 4]) == 0", "candidate([]) == 0"]),
    ("binary_search(items: list[int], target: int) -> int",
     "Return the index of target in the sorted list items, or -1 if it is not there.",
     "lo, hi = 0, len(items) - 1\nwhile lo <= hi:\n    mid = (lo + hi) // 2\n    if items[mid] == target:\n"
     "        return mid\n    if items[mid] < target:\n        lo = mid + 1\n    else:\n"
     "        hi = mid - 1\nreturn -1",
     ["candidate([1, 3, 5, 7], 5) == 2", "candidate([1, 3, 5, 7], 4) == -1", "candidate([], 1) == -1"]),
    ("to_snake_case(name: str) -> str", "Convert a CamelCase or camelCase name to snake_case.",
     "out = []\nfor i, ch in enumerate(name):\n    if ch.isupper() and i > 0:\n        out.append('_')\n"
     "    out.append(ch.lower())\nreturn ''.join(out)",
     ["candidate('CamelCase') == 'camel_case'", "candidate('getHTTP') == 'get_h_t_t_p'", "candidate('x') == 'x'"]),
    ("clamp(value: float, low: float, high: float) -> float", "Limit value to the closed range [low, high].",
     "return max(low, min(high, value))",
     ["candidate(5, 0, 10) == 5", "candidate(-1, 0, 10) == 0", "candidate(11, 0, 10) == 10"]),
    ("average(numbers: list[float]) -> float", "Return the arithmetic mean of numbers, or 0.0 for an empty list.",
     "return sum(numbers) / len(numbers) if numbers else 0.0",
     ["candidate([1, 2, 3, 4]) == 2.5", "candidate([]) == 0.0"]),
    ("median(numbers: list[float]) -> float",
     "Return the median of a non-empty list (the mean of the two middle values for an even count).",
     "s = sorted(numbers)\nn = len(s)\nmid = n // 2\nreturn s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2",
     ["candidate([3, 1, 2]) == 2", "candidate([4, 1, 3, 2]) == 2.5", "candidate([5]) == 5"]),
    ("count_words_longer(text: str, n: int) -> int",
     "Count the whitespace-separated words of text longer than n characters.",
     "return sum(1 for word in text.split() if len(word) > n)",
     ["candidate('a bb ccc dddd', 2) == 2", "candidate('', 1) == 0"]),
    ("remove_vowels(text: str) -> str", "Return text without its vowels (a, e, i, o, u, either case).",
     "return ''.join(ch for ch in text if ch.lower() not in 'aeiou')",
     ["candidate('Hello World') == 'Hll Wrld'", "candidate('AEIOU') == ''"]),
    ("pairs_with_sum(numbers: list[int], target: int) -> list[tuple[int, int]]",
     "Return every pair (i, j) of indices with i < j whose values add up to target, in increasing order.",
     "out = []\nfor i in range(len(numbers)):\n    for j in range(i + 1, len(numbers)):\n"
     "        if numbers[i] + numbers[j] == target:\n            out.append((i, j))\nreturn out",
     ["candidate([1, 2, 3, 4], 5) == [(0, 3), (1, 2)]", "candidate([], 1) == []"]),
    ("run_length_encode(text: str) -> str",
     "Encode runs of repeated characters as the character followed by the run length, e.g. 'aaab' -> 'a3b1'.",
     "out = []\ni = 0\nwhile i < len(text):\n    j = i\n    while j < len(text) and text[j] == text[i]:\n"
     "        j += 1\n    out.append(f'{text[i]}{j - i}')\n    i = j\nreturn ''.join(out)",
     ["candidate('aaab') == 'a3b1'", "candidate('') == ''", "candidate('abc') == 'a1b1c1'"]),
    ("is_leap_year(year: int) -> bool",
     "Return True for leap years of the Gregorian calendar (divisible by 4, except centuries not divisible by 400).",
     "return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)",
     ["candidate(2000) is True", "candidate(1900) is False", "candidate(2024) is True", "candidate(2023) is False"]),
    ("invert_dict(mapping: dict) -> dict", "Return a dict mapping each value of mapping to its key.",
     "return {value: key for key, value in mapping.items()}",
     ["candidate({'a': 1, 'b': 2}) == {1: 'a', 2: 'b'}", "candidate({}) == {}"]),
    ("longest_word(text: str) -> str",
     "Return the longest whitespace-separated word of text (the first one on ties), or '' for no words.",
     "best = ''\nfor word in text.split():\n    if len(word) > len(best):\n        best = word\nreturn best",
     ["candidate('a bbb cc ddd') == 'bbb'", "candidate('') == ''"]),
    ("product(numbers: list[int]) -> int", "Return the product of numbers (1 for an empty list).",
     "result = 1\nfor x in numbers:\n    result *= x\nreturn result",
     ["candidate([2, 3, 4]) == 24", "candidate([]) == 1", "candidate([5, 0]) == 0"]),
    ("group_by_length(words: list[str]) -> dict[int, list[str]]",
     "Group words by their length: a dict from length to the words of that length, in their order.",
     "groups = {}\nfor word in words:\n    groups.setdefault(len(word), []).append(word)\nreturn groups",
     ["candidate(['a', 'bb', 'c']) == {1: ['a', 'c'], 2: ['bb']}", "candidate([]) == {}"]),
    ("is_sorted(items: list) -> bool", "Return True if items is in non-decreasing order.",
     "return all(items[i] <= items[i + 1] for i in range(len(items) - 1))",
     ["candidate([1, 2, 2, 3]) is True", "candidate([2, 1]) is False", "candidate([]) is True"]),
    ("caesar_shift(text: str, shift: int) -> str",
     "Shift each ASCII letter of text by shift places in the alphabet, wrapping around and keeping its case;\n"
     "    other characters are unchanged.",
     "out = []\nfor ch in text:\n    if 'a' <= ch <= 'z':\n        out.append(chr((ord(ch) - 97 + shift) % 26 + 97))\n"
     "    elif 'A' <= ch <= 'Z':\n        out.append(chr((ord(ch) - 65 + shift) % 26 + 65))\n    else:\n"
     "        out.append(ch)\nreturn ''.join(out)",
     ["candidate('abc', 1) == 'bcd'", "candidate('Zz!', 1) == 'Aa!'", "candidate('abc', -1) == 'zab'"]),
    ("count_evens(numbers: list[int]) -> int", "Return how many numbers in the list are even.",
     "return sum(1 for x in numbers if x % 2 == 0)",
     ["candidate([1, 2, 3, 4]) == 2", "candidate([]) == 0", "candidate([-2, 0]) == 2"]),
    ("title_case_name(first: str, last: str) -> str",
     "Return 'Last, First' with both names capitalized (first letter upper case, the rest lower case).",
     "return f'{last.capitalize()}, {first.capitalize()}'",
     ["candidate('ada', 'LOVELACE') == 'Lovelace, Ada'"]),
    ("nth_prime(n: int) -> int", "Return the n-th prime number, counting from 1 (nth_prime(1) == 2).",
     "count, candidate = 0, 1\nwhile count < n:\n    candidate += 1\n"
     "    if all(candidate % d for d in range(2, int(candidate ** 0.5) + 1)):\n        count += 1\nreturn candidate",
     ["candidate(1) == 2", "candidate(5) == 11", "candidate(10) == 29"]),
    ("matrix_sum(matrix: list[list[int]]) -> int", "Return the sum of all the numbers in a matrix.",
     "return sum(sum(row) for row in matrix)",
     ["candidate([[1, 2], [3, 4]]) == 10", "candidate([]) == 0"]),
    ("strip_comments(lines: list[str]) -> list[str]",
     "Remove everything from a '#' to the end of each line, drop trailing spaces, and drop lines left empty.",
     "out = []\nfor line in lines:\n    code = line.split('#', 1)[0].rstrip()\n    if code:\n        out.append(code)\n"
     "return out",
     ["candidate(['x = 1  # one', '# only', 'y = 2']) == ['x = 1', 'y = 2']", "candidate([]) == []"]),
]

# Code below the new function: the module's other functions, and a main block calling it.
_BELOW = '''

def {helper}(values):
    """An older helper of the module."""
    return [v for v in values if v is not None]


if __name__ == "__main__":
    print({name}({args}))
    print({helper}([1, None, 2]))
'''

_ABOVE = '''"""Small utilities."""

import math
import sys


def _log(message):
    print(message, file=sys.stderr)


'''


def _example_args(check: str) -> str:
    """The literal arguments of the first check (`candidate(ARGS) ...`), for the main block's call."""
    depth, start = 0, check.index("(") + 1
    for i in range(start, len(check)):
        if check[i] in "([{":
            depth += 1
        elif check[i] in ")]}":
            if depth == 0:
                return check[start:i]
            depth -= 1
    return ""


def docstring_holes() -> list[dict[str, Any]]:
    """The tasks in the infilling format: the cursor after the auto-indent of the empty body."""
    holes = []
    for number, (signature, docstring, body, checks) in enumerate(TASKS):
        name = signature.split("(", 1)[0]
        prompt = f'{_ABOVE}def {signature}:\n    """{docstring}"""\n'
        solution = "".join(f"    {line}\n" for line in body.split("\n"))
        suffix = _BELOW.format(name=name, helper=f"compact_{number}", args=_example_args(checks[0]))
        test = "def check(candidate):\n" + "".join(f"    assert {c}\n" for c in checks)
        holes.append({"task_id": f"Docstring/{number}/{name}", "entry_point": name, "prompt": prompt,
                      "canonical_solution": solution, "suffix": suffix, "test": test})
    return holes
