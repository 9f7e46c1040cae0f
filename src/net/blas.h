/* Faster replacements for libdarknet's CPU hot loops.
 *
 * Debian's libdarknet.so calls its own exported functions through the PLT, so a definition with the same name
 * in the executable preempts the library's for every call the library makes: defining gemm_cpu here makes every
 * convolution in train_network use OpenBLAS. Each replacement keeps the library's prototype and semantics
 * (pjreddie/darknet master); tests/test_blas.c checks each against the library's own code, reached with dlsym.
 * The prototypes below are the library's (most are not in darknet.h). */
#ifndef GENIE_BLAS_H
#define GENIE_BLAS_H

#include <darknet.h>

/* A thread pool for the replacements, with its own workspaces: `threads` threads including the caller (<= 0: one
 * per online core; at most 4, the tasks a call is split into). A thread that calls blas_pool_use(p) runs every
 * replacement on p (libdarknet passes them no context, so the pool is chosen per thread); blas_pool_use(NULL), or
 * no call, runs them on the calling thread alone. The split into tasks never depends on the pool, so results are
 * the same bits with or without one. OpenBLAS itself always runs single-threaded. NULL + err_msg() when memory or
 * threads are short. */
typedef struct blas_pool blas_pool;
blas_pool *blas_pool_create(int threads);
void blas_pool_use(blas_pool *p);
/* Stops its threads; no thread may be using it. NULL does nothing. */
void blas_pool_free(blas_pool *p);

void gemm(int TA, int TB, int M, int N, int K, float ALPHA, float *A, int lda, float *B, int ldb, float BETA,
          float *C, int ldc);
void gemm_cpu(int TA, int TB, int M, int N, int K, float ALPHA, float *A, int lda, float *B, int ldb, float BETA,
              float *C, int ldc);
void im2col_cpu(float *data_im, int channels, int height, int width, int ksize, int stride, int pad,
                float *data_col);
void col2im_cpu(float *data_col, int channels, int height, int width, int ksize, int stride, int pad,
                float *data_im);

void mean_cpu(float *x, int batch, int filters, int spatial, float *mean);
void variance_cpu(float *x, float *mean, int batch, int filters, int spatial, float *variance);
void scale_bias(float *output, float *scales, int batch, int n, int size);
void add_bias(float *output, float *biases, int batch, int n, int size);
void backward_bias(float *bias_updates, float *delta, int batch, int n, int size);
void backward_scale_cpu(float *x_norm, float *delta, int batch, int n, int size, float *scale_updates);
void mean_delta_cpu(float *delta, float *variance, int batch, int filters, int spatial, float *mean_delta);
void variance_delta_cpu(float *x, float *delta, float *mean, float *variance, int batch, int filters, int spatial,
                        float *variance_delta);
void normalize_delta_cpu(float *x, float *mean, float *variance, float *mean_delta, float *variance_delta,
                         int batch, int filters, int spatial, float *delta);

/* The batch-norm pass of convolutional and connected layers with batch_normalize=1, fused per filter. */
void forward_batchnorm_layer(layer l, network net);
void backward_batchnorm_layer(layer l, network net);

/* The convolutional layer, with the images of a batch split over the calling thread's pool. */
void forward_convolutional_layer(layer l, network net);
void backward_convolutional_layer(layer l, network net);

void forward_maxpool_layer(layer l, network net);
void backward_maxpool_layer(layer l, network net);

void activate_array(float *x, const int n, const ACTIVATION a);
void gradient_array(const float *x, const int n, const ACTIVATION a, float *delta);

#endif
