# stemline in a container, two stages:
#   build: CUDA devel image + the -dev packages; `make install PREFIX=/opt/stemline`
#   run:   CUDA runtime image + only the runtime libraries; /opt/stemline copied over
#
#   docker build -t registry.example.com/stemline:0.1.0 .
#   docker run --gpus all -v /music:/music -v /scratch:/scratch registry.example.com/stemline:0.1.0 \
#     stemline run /scratch/job.yaml
#
# The image named in configs/k8s-indexed-job.yaml. CUDA_VERSION / UBUNTU pick the
# base images (Ubuntu 24.04: FFmpeg 6.1; stemline needs FFmpeg >= 5.1).
ARG CUDA_VERSION=13.0.0
ARG UBUNTU=24.04

FROM nvidia/cuda:${CUDA_VERSION}-cudnn-devel-ubuntu${UBUNTU} AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      libavformat-dev libavcodec-dev libswresample-dev libavutil-dev \
      libyaml-dev libsqlite3-dev libfftw3-dev libopenblas-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make install BUILD=/tmp/build PREFIX=/opt/stemline CMAKE_FLAGS="-DSL_CUDA=on -DCMAKE_BUILD_TYPE=Release" \
    && /opt/stemline/bin/stemline --version

FROM nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-ubuntu${UBUNTU} AS run
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends \
      libavformat60 libavcodec60 libavutil58 libswresample4 \
      libyaml-0-2 libsqlite3-0 libfftw3-single3 libopenblas0-pthread \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/stemline /opt/stemline
ENV PATH=/opt/stemline/bin:$PATH
RUN stemline --version
WORKDIR /work
CMD ["stemline", "--help"]
