#include <vector>

int sum(const std::vector<int>& xs) {
    int total = 0;
    for (int x : xs) {<CURSOR>
    }
    return total;
}
