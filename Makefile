# genie: a Darknet classifier trainer with an online GeNIe (latent diffusion) augmenter.
#
#   make            CPU build of ./genie
#   make MPI=0      without Open MPI even where it is installed (MPI=1, the default when mpicc works: `mpirun -np N
#                   ./genie generate` splits a plan over N ranks; only common/dist.c sees mpi.h)
#   make GPU=1      also compiles the CUDA code with nvcc (cuBLAS, cuRAND), into build-gpu/genie, on a GPU
#                   libdarknet.so built from Debian's darknet source (scripts/darknet_gpu.sh, patches/darknet/)
#                   into build-gpu/darknet/; CUDNN=1 builds that library with cuDNN
#   make test       installs missing Debian packages, builds and runs every tests/test_*.c
#                   (closing line: N passed, N failed)
#   make asan       the same tests under AddressSanitizer + UBSan
#   make tsan       the same tests under ThreadSanitizer
#   make demo       the main job: data, training, validation on Fashion-MNIST-LT, then tail fine-tuning without
#                   and with online GeNIe-Ada
#   make bench      trainer and loader benchmarks against stock darknet
#   make bench-genie  the online GeNIe module: trainer img/s with and without it, module img/s, rows served
#   make bench-dist   genie generate by one process and by mpirun -np 2 ranks: kept img/s, the same bytes
#   make bench-gpu    the engine on a CUDA device at SD 1.5 shapes: it/s, GeNIe images/s, memory
#
# libdarknet.so (Debian) is built with no GPU/CUDNN defines; its structs change layout with them, so every file
# that includes darknet.h is compiled with the defines of the library it links: none in the CPU build, -DGPU (and
# -DCUDNN) against build-gpu/darknet's library in the GPU build (src/net/netio.c asserts the layout). The engine's
# CUDA side uses GENIE_CUDA.

GPU      ?= 0
CUDNN    ?= 0
ifeq ($(origin MPI),undefined)
MPI      := $(shell mpicc -showme:compile >/dev/null 2>&1 && echo 1 || echo 0)
endif
DEBUG    ?= 0
SAN      ?= 0
CUDA     ?= /usr/local/cuda
DARKNET  ?= /usr/lib/darknet
BUILD    ?= build
BIN      ?= genie

CC       ?= cc
NVCC     ?= $(CUDA)/bin/nvcc
OPT      := -O2 -march=x86-64-v2 -mtune=native
ifeq ($(DEBUG),1)
OPT      := -O0 -g
endif
DARKNET_INC := $(DARKNET)/include
DARKNET_LIB := -L$(DARKNET) -Wl,-rpath,$(DARKNET) -ldarknet
DARKNET_SO  :=
ifeq ($(GPU),1)
DARKNET_SO  := build-gpu/darknet/libdarknet.so
DARKNET_INC := build-gpu/darknet/include
# found beside the binary (build-gpu/genie) and the tests (build-gpu/tests/*): the folder can move
DARKNET_LIB := -Lbuild-gpu/darknet -Wl,-rpath,'$$ORIGIN/darknet:$$ORIGIN/../darknet' -ldarknet
endif
CFLAGS   += -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -pthread -g $(OPT) \
            -I. -I$(DARKNET_INC)

# no contracted multiply-adds, whatever -march says: the CPU ops are the reference that the CUDA twins (-fmad=false
# or round-to-nearest intrinsics where bit equality is claimed) and the PyTorch fixtures are compared with
CFLAGS   += -ffp-contract=off
LDLIBS   += $(DARKNET_LIB) -lturbojpeg -lpng -lopenblas -lcjson -lz -lm -pthread
ifeq ($(SAN),1)
CFLAGS   += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
BUILD    := build-asan
BIN      := build-asan/genie
endif
ifeq ($(SAN),thread)
CFLAGS   += -fsanitize=thread -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=thread
BUILD    := build-tsan
BIN      := build-tsan/genie
endif

# The per-pixel augmentation loops are written to vectorise; -O3 does, and without trapping math the selects
# around a division become blends. Both keep each element's arithmetic as written: results are unchanged.
VECTOR_CFLAGS := -O3 -fno-trapping-math

# Folders are layers (ARCHITECTURE.md); every include names its folder from the root (-I. only), which
# scripts/check_layers.sh holds to the layer order.
MAIN_SRC    := src/cmd/main.c
LIB_SRC     := $(filter-out $(MAIN_SRC),$(sort $(shell find common augment src -name '*.c')))
CUDA_SRC    := $(sort $(shell find augment -name '*.cu'))
HEADERS     := $(shell find common augment src -name '*.h')
ifeq ($(GPU),1)
BUILD       := build-gpu
BIN         := build-gpu/genie
CUDA_ARCH   := -gencode arch=compute_75,code=sm_75 -gencode arch=compute_80,code=sm_80 \
               -gencode arch=compute_86,code=sm_86 -gencode arch=compute_89,code=sm_89 \
               -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
# GPU (and CUDNN): the defines the GPU libdarknet.so is built with, for every file (those with darknet.h need them)
CFLAGS      += -DGENIE_CUDA -DGPU -I$(CUDA)/include
LDLIBS      += -L$(CUDA)/lib64 -Wl,-rpath,$(CUDA)/lib64 -lcublas -lcurand -lcudart -lstdc++
ifeq ($(CUDNN),1)
CFLAGS      += -DCUDNN
LDLIBS      += -lcudnn
endif
NVFLAGS     := -O2 -std=c++17 -I. -DGENIE_CUDA $(CUDA_ARCH)
CUDA_OBJ    := $(CUDA_SRC:%.cu=$(BUILD)/%.cu.o)
# the device noise must be philox_fill_normal's: no FMA contraction, so Box-Muller's arguments round as on the host
$(BUILD)/augment/engine/backend/rng_cuda.cu.o: NVFLAGS += -fmad=false
endif

# MPI: common/dist.c, the one file that includes mpi.h, compiles with mpicc's flags into its own object name, so
# switching MPI=0/1 never links a stale one
DIST_SRC    := common/dist.c
ifeq ($(MPI),1)
DIST_OBJ    := $(BUILD)/common/dist-mpi.o
LDLIBS      += $(shell mpicc -showme:link)
else
DIST_OBJ    := $(BUILD)/common/dist.o
endif

# which way the last link went: a switch of MPI relinks the binary and the tests
MPI_FLAG    := $(BUILD)/mpi.flag
$(shell mkdir -p $(BUILD) && [ "$$(cat $(MPI_FLAG) 2>/dev/null)" = "$(MPI)" ] || echo $(MPI) > $(MPI_FLAG))

LIB_OBJ  := $(filter-out $(BUILD)/$(DIST_SRC:.c=.o),$(LIB_SRC:%.c=$(BUILD)/%.o)) $(DIST_OBJ) $(CUDA_OBJ)
TESTS    := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/test_*.c))
FUZZERS  := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/fuzz_*.c))

.PHONY: all deps test run-tests asan tsan demo bench bench-engine bench-genie bench-dist bench-gpu ablate fixtures fuzz clean data
all: $(BIN)

$(BIN): $(MAIN_SRC:%.c=$(BUILD)/%.o) $(LIB_OBJ) $(MPI_FLAG)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LDLIBS)

$(BUILD)/%.o: %.c $(HEADERS) | $(DARKNET_SO)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/common/dist-mpi.o: common/dist.c $(HEADERS) | $(DARKNET_SO)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DGENIE_MPI $(shell mpicc -showme:compile) -c -o $@ $<

$(BUILD)/%.cu.o: %.cu $(HEADERS)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h) $(LIB_OBJ) $(MPI_FLAG)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB_OBJ) $(LDLIBS)

# the GPU libdarknet.so: Debian's darknet source with its patches and genie's (cached; rebuilt when they change)
ifeq ($(GPU),1)
$(DARKNET_SO): scripts/darknet_gpu.sh $(wildcard patches/darknet/*.patch)
	sh scripts/darknet_gpu.sh build build-gpu/darknet $(CUDA) $(CUDNN) $(CUDA_ARCH)
endif

# Tests run from the repository root; each prints its own closing line, tests/run.sh adds them up.
deps:
	@sh scripts/install_deps.sh
ifeq ($(GPU),1)
	@sh scripts/install_deps.sh dpkg-dev patch
	@sh scripts/darknet_gpu.sh fetch build-gpu/darknet
endif

test: deps
	@$(MAKE) --no-print-directory run-tests

# Tests read real Fashion-MNIST (data/fmnist, prepared from Debian's dataset-fashion-mnist).
run-tests: $(BIN) $(TESTS) data/fmnist/train.list
	@mkdir -p build
	@GENIE=./$(BIN) LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp sh tests/run.sh scripts/check_layers.sh $(TESTS)

asan:
	$(MAKE) SAN=1 test

tsan:
	$(MAKE) SAN=thread test

fuzz: $(FUZZERS)
	@for f in $(FUZZERS); do echo "== $$f"; $$f 20000 || exit 1; done

data: data/fmnist/train.list

data/fmnist/train.list: | $(BIN)
	./$(BIN) prepare fmnist data/fmnist

demo: deps
	@$(MAKE) --no-print-directory $(BIN)
	sh scripts/demo.sh

bench: deps
	@sh scripts/install_deps.sh python3-torch python3-torchvision python3-pil
	@$(MAKE) --no-print-directory $(BIN)
	sh scripts/bench.sh

bench-engine: $(BIN)
	sh scripts/bench_engine.sh

bench-genie: $(BIN)
	sh scripts/bench_genie.sh

# genie generate alone and over MPI ranks on this machine: kept img/s, same bytes
bench-dist: $(BIN)
	sh scripts/bench_dist.sh

# builds build-gpu/genie itself, and only when a device is present
bench-gpu:
	sh scripts/bench_gpu.sh

# GeNIe ablation on the project's Fashion-MNIST-LT split (20 to 30 minutes on 2 cores; scripts/ablate.sh says what it runs)
ablate: deps data
	@sh scripts/install_deps.sh gnuplot-nox
	@$(MAKE) --no-print-directory $(BIN)
	RESULTS=data/results/fmnist-lt-ablation sh scripts/ablate.sh

fixtures:
	/usr/bin/python3 scripts/make_image_fixtures.py
	/usr/bin/python3 scripts/make_fixtures.py

clean:
	rm -rf build build-asan build-tsan build-gpu genie

$(BUILD)/src/net/transform.o: CFLAGS += $(VECTOR_CFLAGS)
$(BUILD)/augment/engine/backend/ops_cpu.o: CFLAGS += $(VECTOR_CFLAGS)
