/* gpu.graphs: tests/cudamock/test_graphs.c on a GPU (Open-Unmix and Cnn14
 * batches pipelined on two streams and replayed from CUDA graphs, bit-identical
 * to one forward at a time and to the pipeline without graphs; captures and
 * replays counted by the backend; a forward that waits or allocates falls back
 * to op by op). cudamock's own checks (its counters, its ordering aborts) are
 * left out. Exits 77 without a device. */
#define SL_GRAPHS_ON_GPU 1
#include "../cudamock/test_graphs.c"
