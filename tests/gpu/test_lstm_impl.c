/* gpu.lstm_impl: tests/unit/test_lstm_impl.c on the real "cuda" backend (the
 * persistent LSTM kernel's cooperative launch and grid sync on a GPU, against
 * the step kernel bit for bit and the CPU); exits 77 without a device. */
#define SL_LSTM_BACKEND "cuda"
#define SL_LSTM_SKIP_NO_DEVICE 1
#include "../unit/test_lstm_impl.c"
