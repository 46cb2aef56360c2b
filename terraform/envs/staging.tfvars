# Staging: same layout as production at the smallest useful size; the GPU pool stays at zero unless a GPU
# deployment asks for a node. Apply: terraform apply -var-file=envs/staging.tfvars
project_id  = "geoml-staging"
environment = "staging"
region      = "europe-west4"
zones       = ["europe-west4-a", "europe-west4-b", "europe-west4-c"]
gpu_zones   = ["europe-west4-a", "europe-west4-b", "europe-west4-c"]

model_noncurrent_versions_kept = 3

node_pools = {
  system = {
    machine_type   = "e2-standard-2"
    disk_size_gb   = 50
    min_node_count = 1
    max_node_count = 1
  }
  cpu-regular = {
    machine_type   = "n2-standard-4"
    disk_size_gb   = 50
    min_node_count = 0
    max_node_count = 2
  }
  cpu-spot = {
    machine_type   = "n2-standard-4"
    disk_size_gb   = 50
    min_node_count = 0
    max_node_count = 3
  }
  gpu-spot = {
    machine_type   = "g2-standard-8"
    disk_size_gb   = 200
    min_node_count = 0
    max_node_count = 1
  }
  notebooks = {
    machine_type   = "n2-highmem-4"
    disk_size_gb   = 50
    min_node_count = 0
    max_node_count = 2
  }
}
