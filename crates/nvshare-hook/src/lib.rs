//! libnvshare.so
