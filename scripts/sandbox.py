#!/usr/bin/env python3
"""Seed a sandbox AWS world in the emulator (moto) and print its ids as JSON.

This plays the parts of AWS the operator never creates: the VPC, subnets, the container
instances' security group (tagged `sftp-operator/managed-rules=true`, as README asks), two EC2
instances registered as ECS container instances in cluster `sftp`, an internet-facing NLB, a
public and a private hosted zone, and a Cloud Map namespace.
Usage: sandbox.py ENDPOINT_URL  (credentials/region from the environment)
"""
import json
import sys

import boto3

endpoint = sys.argv[1]
region = "us-east-1"


def client(name):
    return boto3.client(name, endpoint_url=endpoint, region_name=region)


ec2, ecs, elb, r53, sd = (client(n) for n in ("ec2", "ecs", "elbv2", "route53", "servicediscovery"))

vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
subnets = [
    ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=az)["Subnet"]["SubnetId"]
    for cidr, az in (("10.0.1.0/24", "us-east-1a"), ("10.0.2.0/24", "us-east-1b"))
]
sg = ec2.create_security_group(GroupName="sftp-instances", Description="ECS container instances", VpcId=vpc)["GroupId"]
# The tag README's "Least-privilege IAM" asks for on the groups the operator may add rules to.
ec2.create_tags(Resources=[sg], Tags=[{"Key": "sftp-operator/managed-rules", "Value": "true"}])
image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
instances = []
for subnet in subnets:
    inst = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet, SecurityGroupIds=[sg])["Instances"][0]
    instances.append({"id": inst["InstanceId"], "privateIp": inst["PrivateIpAddress"], "subnet": subnet})

ecs.create_cluster(clusterName="sftp")
for inst in instances:
    doc = json.dumps({"instanceId": inst["id"], "region": region, "availabilityZone": "us-east-1a"})
    ci = ecs.register_container_instance(cluster="sftp", instanceIdentityDocument=doc)["containerInstance"]
    inst["containerInstanceArn"] = ci["containerInstanceArn"]

lb = elb.create_load_balancer(Name="sftp", Subnets=subnets, Type="network", Scheme="internet-facing")["LoadBalancers"][0]

public_zone = r53.create_hosted_zone(Name="example.edu.", CallerReference="sandbox-public")["HostedZone"]["Id"]
private_zone = r53.create_hosted_zone(
    Name="example.edu.",
    CallerReference="sandbox-private",
    VPC={"VPCRegion": region, "VPCId": vpc},
    HostedZoneConfig={"PrivateZone": True, "Comment": "campus view"},
)["HostedZone"]["Id"]

sd.create_private_dns_namespace(Name="sftp.internal", Vpc=vpc)
namespace = next(n["Id"] for n in sd.list_namespaces()["Namespaces"] if n["Name"] == "sftp.internal")

json.dump(
    {
        "vpc": vpc,
        "subnets": subnets,
        "securityGroup": sg,
        "instances": instances,
        "cluster": "sftp",
        "loadBalancerArn": lb["LoadBalancerArn"],
        "loadBalancerDns": lb["DNSName"],
        "publicZone": public_zone.split("/")[-1],
        "privateZone": private_zone.split("/")[-1],
        "namespace": namespace,
    },
    sys.stdout,
    indent=2,
)
print()
