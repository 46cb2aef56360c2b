# Production: system and cpu-regular keep one node per zone (three zones) as the committed baseline; spot,
# GPU and notebook pools scale from zero. Apply: terraform apply -var-file=envs/production.tfvars
project_id  = "geoml-prod"
environment = "production"
region      = "europe-west4"
zones       = ["europe-west4-a", "europe-west4-b", "europe-west4-c"]
gpu_zones   = ["europe-west4-a", "europe-west4-b", "europe-west4-c"]

model_noncurrent_versions_kept = 10

node_pools = {
  system = {
    machine_type   = "e2-standard-4"
    disk_size_gb   = 50
    min_node_count = 1
    max_node_count = 2
  }
  cpu-regular = {
    machine_type   = "n2-standard-8"
    disk_size_gb   = 100
    min_node_count = 1
    max_node_count = 6
  }
  cpu-spot = {
    machine_type   = "n2-standard-8"
    disk_size_gb   = 100
    min_node_count = 0
    max_node_count = 15
  }
  gpu-spot = {
    machine_type   = "g2-standard-8"
    disk_size_gb   = 200
    min_node_count = 0
    max_node_count = 2
  }
  notebooks = {
    machine_type   = "n2-highmem-4"
    disk_size_gb   = 100
    min_node_count = 0
    max_node_count = 8
  }
}
