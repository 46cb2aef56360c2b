# Inputs. Environments differ only through envs/<environment>.tfvars; names that docs and manifests rely on
# (cluster, pools, bucket, registry, service accounts) are fixed in the resources, not variables.

variable "project_id" {
  description = "Google Cloud project of the environment: geoml-staging or geoml-prod."
  type        = string
}

variable "environment" {
  description = "Environment name, used in labels: staging or production."
  type        = string

  validation {
    condition     = contains(["staging", "production"], var.environment)
    error_message = "environment must be staging or production."
  }
}

variable "region" {
  description = "Region of the cluster, the registry and the network (zones a, b and c are used)."
  type        = string
  default     = "europe-west4"
}

variable "zones" {
  description = "Zones the regional cluster's node pools span."
  type        = list(string)
  default     = ["europe-west4-a", "europe-west4-b", "europe-west4-c"]
}

variable "gpu_zones" {
  description = "Zones of the GPU pool: only zones that offer NVIDIA L4 (g2 machines)."
  type        = list(string)
  default     = ["europe-west4-a", "europe-west4-b", "europe-west4-c"]
}

variable "subnet_cidr" {
  description = "Primary range of the cluster subnet (nodes)."
  type        = string
  default     = "10.10.0.0/20"
}

variable "pods_cidr" {
  description = "Secondary range for pod addresses."
  type        = string
  default     = "10.16.0.0/14"
}

variable "services_cidr" {
  description = "Secondary range for Service addresses."
  type        = string
  default     = "10.20.0.0/20"
}

variable "master_cidr" {
  description = "/28 range of the control plane's private endpoint."
  type        = string
  default     = "172.16.0.0/28"
}

variable "master_authorized_networks" {
  description = "Networks allowed to reach the control plane (CI runners, office). Empty: only from inside the VPC and through Connect Gateway."
  type = list(object({
    cidr_block   = string
    display_name = string
  }))
  default = []
}

variable "model_bucket_location" {
  description = "Location of the model repository bucket. A multi-region keeps models readable if the region fails (the standby cluster reads the same bucket)."
  type        = string
  default     = "EU"
}

variable "model_noncurrent_versions_kept" {
  description = "Overwritten or deleted model files kept as noncurrent object versions (rollback window); older ones are deleted."
  type        = number
  default     = 5
}

variable "deletion_protection" {
  description = "Refuse to destroy the cluster from Terraform."
  type        = bool
  default     = true
}

variable "node_pools" {
  description = "Machine type, disk and autoscaling bounds (nodes per zone) of each node pool; the pools' roles (spot, taints, GPU) are fixed in node_pools.tf."
  type = map(object({
    machine_type   = string
    disk_size_gb   = number
    min_node_count = number
    max_node_count = number
  }))
  default = {
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
      max_node_count = 5
    }
    cpu-spot = {
      machine_type   = "n2-standard-8"
      disk_size_gb   = 100
      min_node_count = 0
      max_node_count = 10
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
      max_node_count = 5
    }
  }

  validation {
    condition     = length(setsubtract(["system", "cpu-regular", "cpu-spot", "gpu-spot", "notebooks"], keys(var.node_pools))) == 0
    error_message = "node_pools must size every pool: system, cpu-regular, cpu-spot, gpu-spot, notebooks."
  }
}
