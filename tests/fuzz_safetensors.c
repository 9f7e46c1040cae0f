/* `build/tests/fuzz_safetensors N [seed]`: N mutated safetensors buffers through the parser (see
 * fuzz_safetensors.h); exits non-zero if an accepted file breaks an invariant. Crashes are the other failure. */
#include "tests/fuzz_safetensors.h"

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 20000;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 1;
    fuzz_stats st = fuzz_safetensors_run(n, seed);
    printf("fuzz_safetensors: %ld iterations, %ld accepted, %ld rejected, %ld invariant violations\n", st.iters,
           st.accepted, st.rejected, st.violations);
    return st.violations || st.iters != n;
}
