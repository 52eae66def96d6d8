/* test_list.c - placeholder while being written. */
#include "th.h"
int main(void) {
    return 0;
}
